"""Test helper: variables perturbed away from their initial values, as after training."""
import jax


def trained_like(variables, seed: int = 1, scale: float = 0.05):
    """Every parameter plus `scale` Gaussian noise, so zero-initialised blocks (cross-modal attention outputs,
    the adapter) are active."""
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
