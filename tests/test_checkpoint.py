import json

import pytest
import torch

from cube.checkpoint import CheckpointError, load_checkpoint, load_model_weights, save_checkpoint
from cube.config import CubeConfig
from cube.processor import EmbeddingProcessor


def model(lattice=(8, 8, 6), dim=384) -> EmbeddingProcessor:
    torch.manual_seed(0)
    return EmbeddingProcessor(dim, CubeConfig(lattice=lattice))


def save(directory, m: EmbeddingProcessor, epoch: int = 1):
    tensors = {f"best.{k}": v for k, v in m.state_dict().items()}
    return save_checkpoint(directory, tensors, {"stage": "dialogue", "epoch": epoch, "cube": [8, 8, 6]})


def weights_file(directory):
    return directory / json.loads((directory / "checkpoint.json").read_text())["weights_file"]


def test_round_trip_restores_identical_outputs(tmp_path):
    source, target = model(), EmbeddingProcessor(384, CubeConfig())
    save(tmp_path, source)
    load_model_weights(target, load_checkpoint(tmp_path))
    x = torch.randn(3, 384)
    assert torch.equal(source(x), target(x))


def test_a_flipped_byte_is_refused_as_corrupt(tmp_path):
    save(tmp_path, model())
    path = weights_file(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt or truncated.*re-run the stage"):
        load_checkpoint(tmp_path)


def test_a_truncated_file_is_refused(tmp_path):
    save(tmp_path, model())
    path = weights_file(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path)


def test_pickle_files_are_refused_without_being_opened(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"x": torch.ones(1)}, path)
    with pytest.raises(CheckpointError, match="pickle checkpoints are refused"):
        load_checkpoint(path)


def test_missing_checkpoint_says_which_stage_to_run(tmp_path):
    with pytest.raises(CheckpointError, match="run the stage that writes it first"):
        load_checkpoint(tmp_path / "autoencoder")


def test_other_lattice_shape_names_both_shapes(tmp_path):
    save(tmp_path, model(lattice=(8, 8, 6)))
    with pytest.raises(CheckpointError, match=r"shape \(8, 8, 6, 8\).*expects \(8, 8, 12, 8\)"):
        load_model_weights(model(lattice=(8, 8, 12), dim=768), load_checkpoint(tmp_path))


@pytest.mark.fault
def test_failed_save_leaves_the_previous_checkpoint_whole(tmp_path):
    first = model()
    save(tmp_path, first, epoch=1)
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path, {"best.x": torch.ones(1)}, {"epoch": 2, "unserialisable": object()})
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.meta["epoch"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_old_weights_files_are_removed_after_a_new_save(tmp_path):
    save(tmp_path, model(), epoch=1)
    save(tmp_path, model(), epoch=2)
    assert len(list(tmp_path.glob("weights-*.safetensors"))) == 1
    assert load_checkpoint(tmp_path).meta["epoch"] == 2


def test_the_same_training_writes_the_same_folder_byte_for_byte(tmp_path):
    """A re-run's checkpoint folder must hash as the committed one does (DVC records the folder's hash)."""
    save(tmp_path / "a", model())
    save(tmp_path / "b", model())
    files = {name: sorted(p.name for p in (tmp_path / name).iterdir()) for name in ("a", "b")}
    assert files["a"] == files["b"]
    for name in files["a"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
