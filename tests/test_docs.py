"""README.md stays a short guide, and every relative link in it, bench/README.md and docs/*.md
points to a file (and heading) that exists, so moving reference text cannot leave a dead link."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_CHARS = 15_000
DOCS = [ROOT / 'README.md', ROOT / 'bench' / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')
FENCE = re.compile(r'^```.*?^```', re.S | re.M)


def anchors(path):
    """GitHub's heading anchors of a markdown file: lower case, punctuation dropped, spaces to
    hyphens (headings inside code blocks are not headings)."""
    text = FENCE.sub('', path.read_text())
    return {re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')
            for heading in re.findall(r'^#+ (.+)$', text, re.M)}


def relative_links(path):
    text = FENCE.sub('', path.read_text())
    return [link for link in LINK.findall(text) if not re.match(r'[a-z]+:', link)]


def test_readme_is_a_short_guide():
    length = len((ROOT / 'README.md').read_text())
    assert length <= README_MAX_CHARS, (
        f'README.md has {length} characters, over {README_MAX_CHARS}: move reference text into '
        'docs/<topic>.md and link it.')


@pytest.mark.parametrize('doc', DOCS, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for link in relative_links(doc):
        target, _, anchor = link.partition('#')
        path = (doc.parent / target).resolve() if target else doc
        if not path.exists():
            broken.append(f'{link}: no file {path}')
        elif anchor and path.suffix == '.md' and anchor not in anchors(path):
            broken.append(f'{link}: no heading #{anchor} in {path.relative_to(ROOT)}')
    assert not broken, f'{doc.relative_to(ROOT)}: ' + '; '.join(broken)


def test_the_link_check_can_fail(tmp_path):
    doc = tmp_path / 'doc.md'
    doc.write_text('# Title\n\n[a](missing.md) [b](#title) [c](#nowhere)\n')
    assert relative_links(doc) == ['missing.md', '#title', '#nowhere']
    assert anchors(doc) == {'title'}
