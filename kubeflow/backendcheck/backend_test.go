// Package backendcheck runs the Kubeflow Pipelines backend's own Go code on the KFP package that
// kubeflow/runner.py writes: the API server's template loading (template.New, as on an upload),
// its run and recurring-run paths (RunWorkflow, ScheduledWorkflow, both calling
// argocompiler.Compile) and Argo's ValidateWorkflow. The KFP release is pinned in go.mod (see
// README.md beside this file). tests/test_kfp_backend.py compiles the package and runs this test:
//
//	KFP_PACKAGE=<package.yaml> KFP_PIPELINE_JOB=<pipeline-job.json> KFP_WORKFLOW_OUT=<dir> go test ./...
//
// It writes the Workflow of a one-off run and the ScheduledWorkflow of a recurring run to
// KFP_WORKFLOW_OUT as JSON, for the Python test to check against the configuration.
package backendcheck

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeflow/pipelines/backend/src/apiserver/model"
	"github.com/kubeflow/pipelines/backend/src/apiserver/template"
	"github.com/kubeflow/pipelines/backend/src/common/util"
	"sigs.k8s.io/yaml"
)

// The run as kubeflow/submit.py requests it: the package's default pipeline root (the backend
// reads no defaultPipelineRoot: root_dag.go falls back to the cluster's), no parameter given (the
// compiler fills in the spec's defaults).
const (
	runID      = "00000000-0000-0000-0000-000000000001"
	runAt      = 1767225600 // 2026-01-01T00:00:00Z
	dailyCron  = "0 0 2 * * *"
	namespace  = "kubeflow"
	runName    = "funnel-mmoe-check"
	recurrName = "funnel-mmoe-daily"
)

// input reads the file named by the environment variable `name`.
func input(t *testing.T, name string) []byte {
	t.Helper()
	path := os.Getenv(name)
	if path == "" {
		t.Fatalf("%s is not set: tests/test_kfp_backend.py sets it (the file kubeflow/runner.py writes)", name)
	}
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return content
}

// asMap parses a YAML (or JSON) document.
func asMap(t *testing.T, manifest []byte) map[string]interface{} {
	t.Helper()
	var doc map[string]interface{}
	if err := yaml.Unmarshal(manifest, &doc); err != nil {
		t.Fatalf("package is not YAML: %v", err)
	}
	return doc
}

func runtimeConfig(pipelineRoot string) model.RuntimeConfig {
	return model.RuntimeConfig{Parameters: "", PipelineRoot: pipelineRoot}
}

// submitRun does what the API server's CreateRun does with an uploaded package: the template
// (template.New), the Workflow (RunWorkflow: argocompiler.Compile), then Argo's validation with
// lint off (resource_manager.go: executionSpec.Validate(false, false)).
func submitRun(manifest []byte, pipelineRoot string) (*util.Workflow, error) {
	tmpl, err := template.New(manifest)
	if err != nil {
		return nil, err
	}
	run := &model.Run{DisplayName: runName, Namespace: namespace}
	run.RuntimeConfig = runtimeConfig(pipelineRoot)
	spec, err := tmpl.RunWorkflow(run, template.RunWorkflowOptions{RunId: runID, RunAt: runAt})
	if err != nil {
		return nil, err
	}
	if err := spec.Validate(false, false); err != nil {
		return nil, err
	}
	return spec.(*util.Workflow), nil
}

func writeJSON(t *testing.T, name string, value interface{}) {
	t.Helper()
	out := os.Getenv("KFP_WORKFLOW_OUT")
	if out == "" {
		t.Fatal("KFP_WORKFLOW_OUT is not set: the folder to write the compiled Workflow to")
	}
	content, err := json.MarshalIndent(value, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, name), content, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOneOffRun: the package is accepted, compiled and valid for Argo, with lint off (the API
// server) and on (KFP's compiler tests); the Workflow goes to KFP_WORKFLOW_OUT/workflow.json.
func TestOneOffRun(t *testing.T) {
	manifest := input(t, "KFP_PACKAGE")
	root, _ := asMap(t, manifest)["defaultPipelineRoot"].(string)
	wf, err := submitRun(manifest, root)
	if err != nil {
		t.Fatalf("the KFP API server would refuse the package: %v", err)
	}
	if err := wf.Validate(true, false); err != nil {
		t.Fatalf("Argo's lint (as KFP's compiler tests run it) refuses the Workflow: %v", err)
	}
	writeJSON(t, "workflow.json", wf.Workflow)
}

// TestRecurringRun: the ScheduledWorkflow of a daily recurring run (kubeflow/submit.py --cron),
// built without a cluster; the Workflow it starts each day is valid for Argo as well.
func TestRecurringRun(t *testing.T) {
	manifest := input(t, "KFP_PACKAGE")
	root, _ := asMap(t, manifest)["defaultPipelineRoot"].(string)
	tmpl, err := template.New(manifest)
	if err != nil {
		t.Fatalf("the KFP API server would refuse the package: %v", err)
	}
	cron := dailyCron
	job := &model.Job{DisplayName: recurrName, Namespace: namespace, Enabled: true,
		MaxConcurrency: 1, NoCatchup: true,
		Trigger: model.Trigger{CronSchedule: model.CronSchedule{Cron: &cron}}}
	job.RuntimeConfig = runtimeConfig(root)
	swf, err := tmpl.ScheduledWorkflow(job)
	if err != nil {
		t.Fatalf("the KFP API server would refuse the recurring run: %v", err)
	}
	text, ok := swf.Spec.Workflow.Spec.(string) // the Workflow as JSON (ToStringForSchedule)
	if !ok {
		t.Fatalf("the ScheduledWorkflow's workflow is a %T, not the JSON of a Workflow", swf.Spec.Workflow.Spec)
	}
	scheduled, err := util.NewWorkflowFromBytesJSON([]byte(text))
	if err != nil {
		t.Fatalf("the ScheduledWorkflow's workflow does not parse: %v", err)
	}
	if err := scheduled.Validate(false, false); err != nil {
		t.Fatalf("the recurring run's Workflow is not valid for Argo: %v", err)
	}
	writeJSON(t, "scheduled-workflow.json", swf)
}

// TestRefused: what the backend must refuse, each made from the compiled package or job.
func TestRefused(t *testing.T) {
	cases := []struct {
		name, want string
		manifest   func(t *testing.T) []byte
	}{
		{"resolver executor", "non-container and non-importer executor not implemented", func(t *testing.T) []byte {
			// TFX's latest-blessed-model Resolver compiles to an executor of this kind.
			doc := asMap(t, input(t, "KFP_PACKAGE"))
			executors := doc["deploymentSpec"].(map[string]interface{})["executors"].(map[string]interface{})
			executors["Pusher_executor"] = map[string]interface{}{
				"resolver": map[string]interface{}{"outputArtifactQueries": map[string]interface{}{}}}
			return marshal(t, doc)
		}},
		{"schemaVersion 2.0.0", "KFP only supports schema version 2.1.0", func(t *testing.T) []byte {
			doc := asMap(t, input(t, "KFP_PACKAGE"))
			doc["schemaVersion"] = "2.0.0"
			return marshal(t, doc)
		}},
		{"Vertex PipelineJob", "unknown template format", func(t *testing.T) []byte {
			return input(t, "KFP_PIPELINE_JOB")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := submitRun(c.manifest(t), "gs://test-bucket/root")
			if err == nil {
				t.Fatalf("the backend accepted a package with a %s", c.name)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("refused for another reason than %q: %v", c.want, err)
			}
			t.Logf("refused: %v", err)
		})
	}
}

func marshal(t *testing.T, doc map[string]interface{}) []byte {
	t.Helper()
	content, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return content
}
