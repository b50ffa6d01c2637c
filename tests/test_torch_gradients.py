"""Every trainable variable's gradient cleared before each step under PyTorch (the two-model cases,
decoders in one pass and Acc Eval classifiers side by side, are tested against single runs in
tests/test_cladec.py and tests/test_metrics.py, under `make test-torch`)."""

from types import SimpleNamespace

from cladec_cli import runtime, torch_gradients


def model_with_gradients(seen):
    """A stand-in for a Keras model under PyTorch: variables whose `.value` holds a gradient, and a
    train step that records the gradients it finds."""
    variables = [SimpleNamespace(value=SimpleNamespace(grad=object())) for _ in range(3)]

    def train_step(data):
        seen.append((data, [v.value.grad for v in variables]))
        return {"loss": 1.0}

    return SimpleNamespace(trainable_variables=variables, train_step=train_step, train_function=object())


def test_each_step_starts_from_no_gradient_under_pytorch(monkeypatch):
    monkeypatch.setattr(runtime, "backend", lambda: "torch")
    seen = []
    model = model_with_gradients(seen)
    torch_gradients.clear_every_gradient(model)
    once = model.train_step
    torch_gradients.clear_every_gradient(model)
    assert model.train_step is once  # a second fit wraps no second time
    assert model.train_function is None
    assert model.train_step("batch") == {"loss": 1.0}
    assert seen == [("batch", [None, None, None])]


def test_other_backends_keep_their_step(monkeypatch):
    monkeypatch.setattr(runtime, "backend", lambda: "jax")
    model = model_with_gradients([])
    step, function = model.train_step, model.train_function
    torch_gradients.clear_every_gradient(model)
    assert (model.train_step, model.train_function) == (step, function)
