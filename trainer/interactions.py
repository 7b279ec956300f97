"""Learned feature interactions the model builder can put before any architecture's body.

An MLP over concatenated embeddings learns a dot product of two embeddings poorly (Rendle et al.,
2020, "Neural Collaborative Filtering vs. Matrix Factorization Revisited"), yet user x item
affinities are what click and conversion logs are made of. Two options, both adding to the input
features rather than replacing them:

- UserItemProduct: each side's features (the feature spec's `entity` marks) projected to `dim`
  dimensions, multiplied element-wise; the towers weight the products, so the sum (the dot
  product of the two sides) and any bilinear form of the projections are within reach.
- CrossNetwork: DCN-v2's full-rank cross layers (Wang et al., 2021),
  x_{l+1} = x_0 * (W_l x_l + b_l) + x_l, explicit bounded-degree interactions of all features.
"""

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package='funnel')
class UserItemProduct(tf.keras.layers.Layer):
    """[user features, item features] -> the element-wise product of their projections."""

    def __init__(self, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.user = tf.keras.layers.Dense(dim, use_bias=False, name='user_projection')
        self.item = tf.keras.layers.Dense(dim, use_bias=False, name='item_projection')

    def call(self, inputs):
        user, item = inputs
        return self.user(user) * self.item(item)

    def get_config(self):
        return {**super().get_config(), 'dim': self.dim}


@tf.keras.utils.register_keras_serializable(package='funnel')
class CrossNetwork(tf.keras.layers.Layer):
    """`num_layers` DCN-v2 cross layers over the input features; output of the same width."""

    def __init__(self, num_layers: int, **kwargs):
        super().__init__(**kwargs)
        self.num_layers = num_layers

    def build(self, input_shape):
        width = int(input_shape[-1])
        self.cross = [tf.keras.layers.Dense(width, kernel_initializer='glorot_uniform',
                                            name=f'cross_{i}') for i in range(self.num_layers)]
        for layer in self.cross:
            layer.build(input_shape)

    def call(self, x0):
        x = x0
        for layer in self.cross:
            x = x0 * layer(x) + x
        return x

    def get_config(self):
        return {**super().get_config(), 'num_layers': self.num_layers}
