"""Training on real data: the chatterbot corpus embedded by the real MiniLM teacher (conftest)."""

import dataclasses
from pathlib import Path

import pytest
import torch

import cube
from cube.checkpoint import load_checkpoint
from cube.config import CubeConfig, StageConfig
from cube.device import OutOfDeviceMemory
from cube.processor import EmbeddingProcessor, Mode
from cube.trainer import CubeTrainer, TrainingDiverged, predict

FAST_CUBE = CubeConfig(steps=3)
CPU = torch.device("cpu")


FOUR_EPOCHS = StageConfig(epochs=4)


def trainer(data, *, mode=Mode.DIALOGUE, stage="dialogue", config=FOUR_EPOCHS, cube=FAST_CUBE,
            checkpoint_dir=None, on_epoch=None, seed=0) -> CubeTrainer:
    torch.manual_seed(seed)
    model = EmbeddingProcessor(data.dim, cube, mode)
    return CubeTrainer(model, stage, config, data, seed=seed, checkpoint_dir=checkpoint_dir, on_epoch=on_epoch)


def strip_times(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


@pytest.mark.slow
def test_trained_cube_beats_identity_cosine_on_held_out_pairs(embedded):
    run = trainer(embedded, config=StageConfig(epochs=8), cube=CubeConfig())
    result = run.fit()
    test = embedded.test
    cube_cosine = test.score(predict(run.model, test.questions, CPU))["cosine"]
    identity_cosine = test.score(test.questions)["cosine"]
    print(f"test cosine: cube {cube_cosine:.4f} vs identity {identity_cosine:.4f} (best epoch {result.best_epoch})")
    assert result.best_epoch > 0
    assert cube_cosine > identity_cosine + 0.01


def test_same_seed_gives_identical_history(embedded):
    first = trainer(embedded, config=StageConfig(epochs=2)).fit()
    second = trainer(embedded, config=StageConfig(epochs=2)).fit()
    assert strip_times(first.history) == strip_times(second.history)


class Killed(Exception):
    pass


@pytest.mark.fault
def test_resume_after_a_kill_ends_exactly_like_an_uninterrupted_run(embedded, tmp_path):
    config = StageConfig(epochs=4, optimizer="adamw", weight_decay=0.01, scheduler="plateau", plateau_patience=0)
    straight = trainer(embedded, config=config, checkpoint_dir=tmp_path / "straight").fit()

    def kill_after_second_epoch(record):
        if record["epoch"] == 2:
            raise Killed

    with pytest.raises(Killed):
        trainer(embedded, config=config, checkpoint_dir=tmp_path / "killed", on_epoch=kill_after_second_epoch).fit()
    assert load_checkpoint(tmp_path / "killed").meta["epoch"] == 2
    resumed = trainer(embedded, config=config, checkpoint_dir=tmp_path / "killed", seed=0).fit()
    assert resumed.resumed_from_epoch == 2
    assert strip_times(resumed.history) == strip_times(straight.history)
    assert resumed.best_value == straight.best_value


def test_a_changed_config_does_not_resume_from_an_old_checkpoint(embedded, tmp_path):
    trainer(embedded, config=StageConfig(epochs=1), checkpoint_dir=tmp_path).fit()
    again = trainer(embedded, config=StageConfig(epochs=1, lr=1e-3), checkpoint_dir=tmp_path).fit()
    assert again.resumed_from_epoch is None


def test_changed_training_code_does_not_resume_from_an_old_checkpoint(embedded, tmp_path, monkeypatch):
    """The resume key holds a digest of the model library's source: a checkpoint other code wrote starts afresh."""
    trainer(embedded, config=StageConfig(epochs=1), checkpoint_dir=tmp_path).fit()
    assert trainer(embedded, config=StageConfig(epochs=1), checkpoint_dir=tmp_path).fit().resumed_from_epoch == 1
    monkeypatch.setattr("cube.trainer.library_digest", lambda: "other code")
    again = trainer(embedded, config=StageConfig(epochs=1), checkpoint_dir=tmp_path).fit()
    assert again.resumed_from_epoch is None


def test_the_library_digest_follows_the_source(tmp_path):
    from cube.digest import files_digest, library_digest

    package = Path(cube.__file__).parent
    files = sorted(package.glob("*.py"))
    assert library_digest() == files_digest(files, root=package)
    copies = []
    for path in files:
        copies.append(tmp_path / path.name)
        copies[-1].write_bytes(path.read_bytes())
    copies[0].write_bytes(copies[0].read_bytes() + b"\n# changed\n")
    assert files_digest(copies, root=tmp_path) != library_digest()


@pytest.mark.fault
def test_nan_loss_stops_with_stage_epoch_and_step_and_keeps_the_last_good_checkpoint(embedded, tmp_path):
    run = None

    def poison(record):
        run.inputs = run.inputs.clone()
        run.inputs[:] = float("nan")

    run = trainer(embedded, config=StageConfig(epochs=3), checkpoint_dir=tmp_path, on_epoch=poison)
    with pytest.raises(TrainingDiverged, match=r"stage 'dialogue': loss is nan at epoch 2, step 1"):
        run.fit()
    assert load_checkpoint(tmp_path).meta["epoch"] == 1


def test_autoencoder_stage_learns_to_denoise(embedded):
    config = StageConfig(epochs=3, noise_std=0.01, input_dropout=0.1)
    result = trainer(embedded, mode=Mode.AUTOENCODER, stage="autoencoder", config=config).fit()
    assert result.monitor == "reconstruction_cosine"
    assert result.best_epoch > 0
    assert result.best_value > result.history[0]["val/noisy_cosine"]  # better than passing the noisy input on


def test_semantic_threshold_that_drops_every_pair_is_a_clear_error(embedded):
    opposite = dataclasses.replace(embedded.train, answers=-embedded.train.questions)
    data = dataclasses.replace(embedded, train=opposite)
    with pytest.raises(ValueError, match="semantic_similarity_threshold = 0.5 leaves no training pairs"):
        trainer(data, config=dataclasses.replace(StageConfig(), semantic_similarity_threshold=0.5))


def test_curriculum_and_contrastive_losses_train(embedded):
    config = StageConfig(epochs=2, infonce_weight=0.5, triplet_weight=0.25, diversity_weight=0.05, curriculum=True,
                         curriculum_start=0.5, curriculum_epochs=1, monitor="mrr")
    result = trainer(embedded, config=config).fit()
    assert result.history[0]["pairs_used"] == round(0.5 * len(embedded.train))
    assert result.history[1]["pairs_used"] == len(embedded.train)
    assert {"loss/infonce", "loss/triplet", "loss/diversity"} <= set(result.history[0])


class OutOfMemoryAfter(torch.nn.Module):
    """Fault injection: the wrapped model runs out of device memory from the given call on (CPU cannot)."""

    def __init__(self, model: EmbeddingProcessor, calls: int) -> None:
        super().__init__()
        self.model, self.calls = model, calls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls -= 1
        if self.calls < 0:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.model(x)

    def __getattr__(self, name: str):  # noqa: ANN204
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.model, name)


def test_out_of_memory_names_the_batch_size_and_a_smaller_one(embedded):
    run = trainer(embedded, config=StageConfig(epochs=1, batch_size=32))
    run.model = OutOfMemoryAfter(run.model, calls=2)
    with pytest.raises(OutOfDeviceMemory, match=r"stage 'dialogue', epoch 1, step \d+: out of cpu memory at batch size 32; "
                                                r"set train.dialogue.batch_size to 16 or lower"):
        run.fit()


def test_a_stage_no_epoch_improves_keeps_its_starting_map_and_reports_that_maps_validation(embedded, tmp_path):
    run = trainer(embedded, config=StageConfig(epochs=2, lr=0.0), checkpoint_dir=tmp_path / "stage")
    start = {k: v.clone() for k, v in run.model.state_dict().items()}
    result = run.fit()
    assert result.best_epoch == 0
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(tensor, start[name]), name
    kept = embedded.val.score(predict(run.model, embedded.val.questions, CPU))
    assert result.start_val["mrr"] == pytest.approx(kept["mrr"]) and result.start_val["cosine"] == pytest.approx(
        kept["cosine"])
    resumed = trainer(embedded, config=StageConfig(epochs=2, lr=0.0), checkpoint_dir=tmp_path / "stage").fit()
    assert resumed.start_val == result.start_val  # a finished stage read back carries them too
