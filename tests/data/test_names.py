"""Dataset names: when two of them name the same data."""

from cladec_cli.data.names import same_dataset


def test_the_same_file_written_otherwise_is_the_same_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    assert same_dataset("fashion_mnist", "fashion_mnist")
    assert same_dataset("npz:data/a.npz", f"npz:{tmp_path / 'data' / 'a.npz'}")
    assert same_dataset("folder:data", "folder:./data/")
    assert not same_dataset("npz:data/a.npz", "npz:data/b.npz")
    assert not same_dataset("npz:data", "folder:data")
    assert not same_dataset("fashion_mnist", "mnist")
    assert not same_dataset("fashion_mnist", None) and not same_dataset(None, "npz:a.npz")
