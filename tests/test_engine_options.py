"""Model options from flags, self-describing checkpoints, checks before any work, Ctrl-C.

Each command that builds a model takes its options from ``-m`` and the named flags (an
option the model does not take is one error line naming the valid ones); our checkpoints
carry the model, its options, the classes and the input spec, so test, predict and stream
need no model flags; a failed train leaves no run folder.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from archs import create_model
from ops.common.errors import UserError
from ops.common.options import given_options
from ops.data.loader import ViewSettings, build_dataset
from ops.engine.checkpoints import load_model, model_metadata, remove_stale_temporaries
from ops.engine.config import DataSettings, TrainSettings
from ops.evaluation.scores import read_scores
from videorec_cli.main import app

SMALL = ["--crop-size", "32", "--scale-size", "32", "-b", "4", "--workers", "0", "--epochs", "1",
         "--max-iters-per-epoch", "1"]
TSM = ["--arch", "tsm_mbv2", "-m", "width_mult=0.25", "--num-segments", "4", "--npb"]




def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def tiny_run(tiny_dataset, tmp_path_factory) -> Path:
    """A checkpoint of a tiny TSM (4 segments, 32 px, no partial BN) and its score file with exits."""
    out = tmp_path_factory.mktemp("run")
    invoke("train", tiny_dataset, *TSM, *SMALL, "-o", out)
    invoke("test", tiny_dataset, "--weights", out / "last.pth", "--workers", 0, "--exits", "-o", out / "scores")
    return out


def test_given_options_from_named_flags_and_pairs():
    given = given_options({"--dropout": 0.3, "--npb": True, "--num-segments": None, "--temporal-pool": True},
                          ["width_mult=0.5", "shift-div=4", "shift_place=block", "coarse_to_fine=false"])
    assert given.values == {"dropout": 0.3, "partial_bn": False, "temporal_pool": True, "width_mult": 0.5,
                            "shift_div": 4, "shift_place": "block", "coarse_to_fine": False}
    assert given.flags["dropout"] == "--dropout 0.3" and given.flags["shift_div"] == "-m shift_div=4"
    with pytest.raises(UserError, match="-m dropout=0.1 and --dropout 0.3 both set dropout"):
        given_options({"--dropout": 0.3}, ["dropout=0.1"])
    with pytest.raises(UserError, match="takes key=value"):
        given_options({}, ["width_mult"])
    assert given_options({"--npb": None}, []).values == {}


def test_a_flag_the_model_does_not_take_names_the_flag_the_model_and_its_options():
    assert given_options({"--npb": True}, ["width_mult=0.5"]).check("tsm_mbv2") == "tsm_mbv2"
    with pytest.raises(UserError, match=r"^--npb does not apply to x3d_xs; it takes: dropout, fast_depthwise"):
        given_options({"--npb": True}).check("x3d_xs")
    with pytest.raises(UserError, match=r"-m shift_div=4 does not apply to tdn_r50; it takes: dropout, "):
        given_options({}, ["shift_div=4"]).check("tdn_r50")
    with pytest.raises(UserError, match="num_classes is not a model option"):
        given_options({}, ["num_classes=3"]).check("tsm_mbv2")


def test_training_keeps_partial_bn_on_unless_npb():
    from ops.engine.trainer import build_model

    def built(given):
        settings = TrainSettings(data=DataSettings(dataset="unused"), arch="tsm_mbv2",
                                 model_options={"width_mult": 0.25, "num_segments": 2, **given.values})
        return build_model(settings, 4)[0].model_options["partial_bn"]

    assert built(given_options({})) is True  # TSM semantics
    assert built(given_options({"--npb": True})) is False


@pytest.mark.parametrize("command", ["train", "test", "predict", "stream", "early-exit"])
def test_unknown_model_option_is_one_error_line_naming_the_valid_ones(command, tiny_run,
        tiny_dataset, tmp_path, run_main):
    ckpt = tiny_run / "last.pth"
    args = {"train": ["train", tiny_dataset, *TSM, *SMALL, "-o", tmp_path / "run"],
            "test": ["test", tiny_dataset, "--weights", ckpt, "-o", tmp_path / "scores"],
            "predict": ["predict", Path(tiny_dataset).parent / "frames" / "grow" / "grow_4", "--weights", ckpt],
            "stream": ["stream", tmp_path / "unused.mp4", "--weights", ckpt],
            "early-exit": ["early-exit", "--eval-scores", tiny_run / "scores" / "scores_clip0of1.pkl",
                           "-o", tmp_path / "curve"]}[command]
    code, _, err = run_main(*args, "-m", "bogus=1")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("videorec: error: -m bogus=1 does not apply to tsm_mbv2; it takes: consensus_type, "
                          "dropout, num_segments, partial_bn, shift_div"), err
    assert not (tmp_path / "run").exists() and not (tmp_path / "scores").exists() and not (tmp_path / "curve").exists()


@pytest.mark.parametrize("case", ["missing list", "empty list", "unknown arch", "bad option", "npb on x3d",
                                  "missing tune-from"])
def test_a_failed_train_leaves_no_run_folder(case, tiny_dataset, tmp_path, run_main):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    extra = {"missing list": [*TSM, "--train-list", tmp_path / "nope.txt"],
             "empty list": [*TSM, "--train-list", empty],
             "unknown arch": ["--arch", "nonet"],
             "bad option": [*TSM, "-m", "depth=3"],
             "npb on x3d": ["--arch", "x3d_xs", "--npb"],
             "missing tune-from": [*TSM, "--tune-from", tmp_path / "missing.pth"]}[case]
    expected = {"missing list": "nope.txt: list file not found", "empty list": "empty.txt: list file has no entries",
                "unknown arch": "unknown model 'nonet'", "bad option": "-m depth=3 does not apply to tsm_mbv2",
                "npb on x3d": "--npb does not apply to x3d_xs", "missing tune-from": "missing.pth: no such checkpoint"}
    run = tmp_path / "runs" / "run"
    code, _, err = run_main("train", tiny_dataset, *extra, *SMALL, "-o", run)
    assert code == 2 and expected[case] in err and err.count("\n") == 1, err
    assert not run.exists() and not run.parent.exists()


def test_train_and_test_check_their_output_folder_before_any_work(tiny_dataset, tmp_path, run_main):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _, err = run_main("test", tiny_dataset, "--weights", tmp_path / "missing.pth",
                            "-o", blocker / "scores")
    assert code == 2 and f"score folder {blocker / 'scores'}: {blocker} is not a folder" in err  # not the weights
    code, _, err = run_main("train", tiny_dataset, *TSM, *SMALL, "--tune-from",
                            tmp_path / "missing.pth", "-o", blocker / "run")
    assert code == 2 and f"run folder {blocker / 'run'}: {blocker} is not a folder" in err


def test_stale_temporaries_of_dead_processes_only_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    files = {name: tmp_path / name for name in (f".last.pth.tmp-{dead.pid}", f".best.pth.tmp-{os.getpid()}",
                                                ".notes.tmp-abc", "last.pth", f"last.pth.tmp-{dead.pid}")}
    for path in files.values():
        path.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == [files[f".last.pth.tmp-{dead.pid}"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(files) - {f".last.pth.tmp-{dead.pid}"})
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_checkpoint_describes_its_model_classes_and_input(tiny_run, tiny_dataset, tmp_path):
    ckpt = torch.load(tiny_run / "last.pth", weights_only=True)
    assert ckpt["arch"] == "tsm_mbv2" and ckpt["num_classes"] == 4
    assert ckpt["class_names"] == ["grow", "move_left", "move_right", "shrink"]
    assert ckpt["model_options"]["num_segments"] == 4 and ckpt["model_options"]["width_mult"] == 0.25
    assert ckpt["model_options"]["partial_bn"] is False and ckpt["model_options"]["dropout"] == 0.5  # a default
    assert ckpt["input_spec"]["crop_size"] == 32 and ckpt["input_spec"]["num_segments"] == 4
    assert ckpt["input_spec"]["mean"] == (0.485, 0.456, 0.406) and ckpt["input_spec"]["sampling"] == "segment"
    loaded = load_model(str(tiny_run / "last.pth"))  # no flags at all
    assert loaded.model.arch_name == "tsm_mbv2" and loaded.model.model_options == ckpt["model_options"]
    assert loaded.spec.crop_size == 32 and loaded.class_names == ckpt["class_names"] and loaded.notes == []
    settings = json.loads((tiny_run / "settings.json").read_text())
    assert settings["model_options"] == ckpt["model_options"] and settings["input_spec"] == json.loads(
        json.dumps(ckpt["input_spec"]))
    # a flag that overrides a stored value says so, in one line each, and takes effect
    out = invoke("test", tiny_dataset, "--weights", tiny_run / "last.pth", "--workers", 0, "--crop-size", 48,
                 "--test-segments", 2, "-o", tmp_path / "s")
    assert "--crop-size 48 overrides the checkpoint's 32" in out.output
    assert "--test-segments 2 overrides the checkpoint's 4" in out.output
    scores = read_scores(tmp_path / "s" / "scores_clip0of1.pkl")
    assert scores.settings["input_spec"]["crop_size"] == 48 and scores.settings["input_spec"]["num_segments"] == 2
    assert scores.settings["arch"] == "tsm_mbv2" and scores.settings["model_options"]["num_segments"] == 2
    pred = invoke("predict", Path(tiny_dataset).parent / "frames" / "grow" / "grow_4", "--weights",
                  tiny_run / "last.pth", "--top-k", 2, "--device", "cpu")
    assert len(pred.output.strip().splitlines()) == 2
    assert {line.split()[-1] for line in pred.output.strip().splitlines()} <= set(ckpt["class_names"])


def test_early_exit_measures_the_model_the_score_file_records(tiny_run, tmp_path):
    out = invoke("early-exit", "--eval-scores", tiny_run / "scores" / "scores_clip0of1.pkl", "-o", tmp_path / "curve")
    report = json.loads((tmp_path / "curve" / "early_exit.json").read_text())
    one_view = create_model("tsm_mbv2", 4, num_segments=4, width_mult=0.25)
    from archs import measure_gmacs

    assert report["num_exits"] == 4 and "early_exit.csv" in out.output
    assert report["gflops_per_exit"] == pytest.approx(measure_gmacs(one_view, (1, 3, 4, 32, 32)) / 4, rel=1e-6)


def make_video(path: Path, seconds: int, fps: int) -> Path:
    from ops.prep.media import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc=duration={seconds}:size=96x80:rate={fps}", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def test_stream_takes_classes_and_input_size_from_our_checkpoint(tmp_path):
    model = create_model("movinet_a0_stream", 3)
    names = ["clap", "jump", "wave"]
    ckpt = tmp_path / "stream.pth"
    torch.save({"model": model.state_dict(), **model_metadata(model, 3, names, model.input_spec.replace(crop_size=64))},
               ckpt)
    video = make_video(tmp_path / "v.mp4", seconds=1, fps=10)
    result = CliRunner().invoke(app, ["stream", str(video), "--weights", str(ckpt), "--no-jit", "--top-k", "3"])
    assert result.exit_code == 0, result.output
    assert "movinet_a0_stream: 64x64 frames at 5 fps" in result.output  # the trained size, not the model's 172
    last = result.output.strip().splitlines()[-1]
    assert last.split()[:2] == ["1.0s", "5"] and {w for w in last.split() if w.isalpha()} == set(names)


def test_keyboard_interrupt_is_one_line_and_exit_130(tmp_path, monkeypatch, run_main):
    import ops.evaluation.early_exit_report as report

    def interrupted(**_):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "early_exit_report", interrupted)
    code, _, err = run_main("early-exit", "--eval-scores", tmp_path / "x.pkl",
                            "--gflops-per-exit", 1)
    assert code == 130 and err == "videorec: interrupted\n"


# The tests below use the archs contract (msn alias; TSN identity consensus trained through
# training_loss; num_segments on every 3D builder).

def test_family_alias_trains_the_model_it_names(tiny_dataset, tmp_path):
    invoke("train", tiny_dataset, "--arch", "msn", "--num-segments", 2, *SMALL, "-b", 2, "-o", tmp_path / "run")
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert settings["arch"] == "msn_r50" and torch.load(tmp_path / "run" / "last.pth", weights_only=True)["arch"] == "msn_r50"


@pytest.mark.parametrize("arch", ["vov3d_m", "x3d_m"])
def test_num_segments_sets_the_frames_of_the_clip_and_the_model(arch, tiny_dataset, tmp_path):
    from ops.engine.trainer import prepare

    given = given_options({"--num-segments": 32})
    given.check(arch)
    prepared = prepare(TrainSettings(data=DataSettings(dataset=str(tiny_dataset), crop_size=32, workers=0), arch=arch,
                                     model_options=given.values, output_dir=str(tmp_path / "run")))
    assert prepared.model.model_options["num_segments"] == 32 and prepared.model.input_spec.num_frames == 32
    assert prepared.spec.num_frames == 32 and prepared.train_set[0]["clip"].shape[2] == 32  # (V, C, T, H, W)
    assert not (tmp_path / "run").exists()  # nothing written before training starts


def test_identity_consensus_scores_are_the_mean_of_the_segment_logits(tiny_dataset, tmp_path):
    invoke("train", tiny_dataset, "--arch", "tsn_mbv2", "-m", "width_mult=0.25", "--num-segments", 3, "--consensus",
           "identity", *SMALL, "-o", tmp_path / "run")
    out = invoke("test", tiny_dataset, "--weights", tmp_path / "run" / "last.pth", "--workers", 0, "-o", tmp_path / "s")
    scores = read_scores(tmp_path / "s" / "scores_clip0of1.pkl")
    loaded = load_model(str(tmp_path / "run" / "last.pth"))
    assert loaded.model.model_options["consensus_type"] == "identity"
    # TSN segments are independent: a 1-segment copy of the model gives each segment's logits
    single = create_model("tsn_mbv2", 4, **{**loaded.model.model_options, "num_segments": 1}).eval()
    single.load_state_dict(loaded.model.state_dict())
    dataset = build_dataset(DataSettings(dataset=str(tiny_dataset)), loaded.spec, "test", "test", ViewSettings())
    with torch.no_grad():
        mean = np.stack([
            torch.stack([single(clip[:, :, t:t + 1]) for t in range(clip.shape[2])]).mean(0)[0].numpy()
            for clip in (dataset.transform.normalize(dataset[i]["clip"]) for i in range(len(dataset)))])
    np.testing.assert_allclose(scores.logits[:, 0], mean, atol=1e-5)  # the video's logits: the segments' mean
    top1 = 100.0 * float(np.mean(scores.logits[:, 0].argmax(1) == scores.labels))
    assert f" top1 {top1:.2f}" in out.output  # the printed video metric is that of these logits
