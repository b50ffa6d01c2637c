"""Models trained in mixed precision are saved in float32, so that plain `keras.models.load_model`
opens them anywhere and they compute in full precision unless a job asks otherwise."""

import keras


def _is_mixed(policy):
    return isinstance(policy, dict) and policy.get("class_name") == "DTypePolicy" and \
        str(policy.get("config", {}).get("name", "")).startswith("mixed_")


def _float32_config(config):
    """A serialized model config with every mixed dtype policy replaced by float32."""
    if isinstance(config, dict):
        return {k: ("float32" if k == "dtype" and _is_mixed(v) else _float32_config(v)) for k, v in config.items()}
    if isinstance(config, list):
        return [_float32_config(v) for v in config]
    return config


def uses_mixed_precision(model):
    return any(layer.dtype_policy.name.startswith("mixed_") for layer in model._flatten_layers())


def float32_copy(model):
    """`model` itself when it computes in float32, else a float32 model with the same weights."""
    if not uses_mixed_precision(model):
        return model
    config = _float32_config(keras.saving.serialize_keras_object(model))
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")  # the model and its inputs take the global policy
    try:
        copy = keras.saving.deserialize_keras_object(config)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    copy.set_weights(model.get_weights())
    return copy
