"""Video mode: N frames in, N masks out in order; the coarse mask of each frame reaches the refiner;
resume after a crash recomputes nothing; tracking with a tiny SAM 2 video model; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("av")

from dissam.data.clips import clip_frames, moving_clip, write_clip  # noqa: E402
from dissam.errors import BoxError, DisSamError  # noqa: E402
from dissam.io import read_mask  # noqa: E402
from dissam.predictor import DisSamPredictor  # noqa: E402
from dissam.video.io import VideoReadError, iter_frames, probe  # noqa: E402
from dissam.video.pipeline import VideoJob, frame_box, segment_video  # noqa: E402
from dissam.video.stability import compensated_iou, flicker, shift  # noqa: E402

N = 6
SIZE = (48, 64)


class ScriptedTracker:
    """Stage 1 that returns the clip's ground truth (> 127), and records what it was asked."""

    name = "scripted"

    def __init__(self, gts):
        self.gts = gts
        self.calls = []

    def start(self, frame, index, box=None, mask=None, reverse=False):
        self.calls.append(("start", index, "box" if box is not None else "mask", reverse))
        return self.gts[index] > 127 if mask is None else np.asarray(mask, bool)

    def step(self, frame, index):
        self.calls.append(("step", index))
        return self.gts[index] > 127


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    spec = moving_clip(N, SIZE, kind="blob", seed=3)
    path = folder / "clip.mp4"
    write_clip(path, spec, fps=8)
    gts = [gt for _, gt in clip_frames(spec)]
    return path, spec, gts


@pytest.fixture()
def predictor(tiny_refiner):
    return DisSamPredictor(None, tiny_refiner, size=64)


def _box(gt):
    ys, xs = np.nonzero(gt > 127)
    return [xs.min(), ys.min(), xs.max(), ys.max()]


def test_n_frames_give_n_masks_in_order_and_videos(clip, predictor, tmp_path):
    path, spec, gts = clip
    tracker = ScriptedTracker(gts)
    res = segment_video(path, tmp_path / "out", predictor, tracker, box=_box(gts[0]), batch_size=4, progress=False)
    assert (res.frames, res.computed, res.skipped) == (N, N, 0)
    names = sorted(p.name for p in (tmp_path / "out" / "masks").iterdir())
    assert names == [f"{i:06d}.png" for i in range(N)]
    assert [c[1] for c in tracker.calls] == list(range(N))  # tracked in order, prompted once on frame 0
    assert tracker.calls[0] == ("start", 0, "box", False)
    for i in range(N):  # coarse/ holds exactly the tracker's mask of that frame
        np.testing.assert_array_equal(read_mask(tmp_path / "out" / "coarse" / f"{i:06d}.png") > 127, gts[i] > 127)
    assert probe(res.alpha_video).frames == N and probe(res.cutout_video).frames == N
    # the alpha video carries the soft maps (H.264 loses a little), the cut-out has transparency
    alpha0 = read_mask(tmp_path / "out" / "alpha" / "000000.png").astype(int)
    _, first = next(iter_frames(res.alpha_video))
    assert np.abs(first[: SIZE[0], : SIZE[1], 0].astype(int) - alpha0).mean() < 6
    import av

    container = av.open(str(res.cutout_video))
    decoder = av.CodecContext.create("libvpx-vp9", "r")
    frames = [f for p in container.demux(container.streams.video[0]) for f in decoder.decode(p)]
    container.close()
    assert frames[0].format.name == "yuva420p"


def test_each_frames_coarse_mask_and_box_reach_the_refiner_in_batches(clip, predictor, tmp_path):
    from dissam.transforms import clean_inputs

    path, spec, gts = clip
    seen = []
    handle = predictor.refiner.net.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    try:
        segment_video(path, tmp_path / "o", predictor, ScriptedTracker(gts), box=_box(gts[0]), batch_size=4,
                      write_videos=False, progress=False)
    finally:
        handle.remove()
    assert [x.shape[0] for x in seen] == [4, 2]  # batched across frames
    x = torch.cat(seen)
    frames = [f for _, f in iter_frames(path)]
    for i in range(N):
        coarse = gts[i] > 127
        ref = clean_inputs(frames[i], coarse[None], frame_box(coarse)[None], 64)[0]
        torch.testing.assert_close(x[i, 3:], ref[3:], atol=0, rtol=0)  # coarse mask + its box map
        torch.testing.assert_close(x[i, :3], ref[:3], atol=0, rtol=0)  # that frame's pixels


def test_prompt_frame_in_the_middle_tracks_forward_then_backward(clip, predictor, tmp_path):
    path, spec, gts = clip
    tracker = ScriptedTracker(gts)
    res = segment_video(path, tmp_path / "o", predictor, tracker, box=_box(gts[3]), frame=3, batch_size=2,
                        write_videos=False, progress=False)
    assert res.computed == N
    assert tracker.calls[0] == ("start", 3, "box", False)
    assert [c[1] for c in tracker.calls] == [3, 4, 5, 3, 2, 1, 0]  # the backward pass re-starts on frame 3
    assert tracker.calls[3] == ("start", 3, "mask", True)
    assert sorted(p.name for p in (tmp_path / "o" / "masks").iterdir()) == [f"{i:06d}.png" for i in range(N)]
    assert not (tmp_path / "o" / ".frames_before_prompt").exists()


@pytest.mark.parametrize("frame", [0, 2])
def test_resume_after_a_crash_writes_no_frame_twice(clip, predictor, tmp_path, frame):
    path, spec, gts = clip
    out = tmp_path / "o"
    written = []

    class Crash(Exception):
        pass

    def crash_after_three(i):
        written.append(i)
        if len(written) == 3:
            raise Crash

    job = VideoJob(path, out, predictor, ScriptedTracker(gts), box=_box(gts[frame]), frame=frame, batch_size=1,
                   write_videos=False, progress=False, on_frame=crash_after_three)
    with pytest.raises(Crash):
        job.run()
    assert len(list((out / "masks").iterdir())) == 3
    tracker = ScriptedTracker(gts)
    job = VideoJob(path, out, predictor, tracker, box=_box(gts[frame]), frame=frame, batch_size=1,
                   write_videos=True, progress=False, on_frame=written.append)
    res = job.run()
    assert (res.computed, res.skipped) == (N - 3, 3)
    assert sorted(written) == list(range(N))  # every frame written exactly once over the two runs
    last = written[2]
    assert tracker.calls[0] == ("start", last, "mask", frame > last)  # re-seeded on the last written frame
    assert probe(res.alpha_video).frames == N
    again = VideoJob(path, out, predictor, ScriptedTracker(gts), box=_box(gts[frame]), frame=frame,
                     write_videos=False, progress=False).run()
    assert again.computed == 0


def test_sam2_video_tracker_end_to_end(clip, predictor, tmp_path):
    from stage1_helpers import tiny_sam2_video

    from dissam.video.trackers import SamVideoTracker

    path, spec, gts = clip
    tracker = SamVideoTracker(tiny_sam2_video())
    assert tracker.name == "sam2" and tracker.window == 5
    res = segment_video(path, tmp_path / "o", predictor, tracker, box=_box(gts[0]), write_videos=False,
                        progress=False)
    assert res.computed == N
    coarse = [read_mask(tmp_path / "o" / "coarse" / f"{i:06d}.png") for i in range(N)]
    assert all(c.shape == SIZE for c in coarse)
    # streaming state stays bounded: no frame pixels but the current one, outputs within the window
    assert len(tracker.session.processed_frames) == 1
    assert tracker.state_frames() <= tracker.window + 1


def test_sam2_tracker_memory_is_pruned_on_long_runs():
    from stage1_helpers import tiny_sam2_video

    from dissam.video.trackers import SamVideoTracker

    tracker = SamVideoTracker(tiny_sam2_video())
    frame = np.zeros((40, 40, 3), np.uint8)
    tracker.start(frame, 0, box=[5, 5, 30, 30])
    for i in range(1, 10):
        assert tracker.step(frame, i).shape == (40, 40)
    kept = sorted(tracker.session.output_dict_per_obj[0]["non_cond_frame_outputs"])
    assert kept == list(range(10 - tracker.window - 1, 10))
    assert list(tracker.session.output_dict_per_obj[0]["cond_frame_outputs"]) == [0]
    unpruned = SamVideoTracker(tracker.model, prune=False)
    unpruned.start(frame, 0, box=[5, 5, 30, 30])
    frames = np.random.default_rng(0).integers(0, 255, (10, 40, 40, 3), dtype=np.uint8)
    masks = [unpruned.step(frames[i], i) for i in range(1, 10)]
    assert len(unpruned.session.processed_frames) == 10 and unpruned.state_bytes() > 2 * tracker.state_bytes()
    # pruning forgets only what the model no longer reads: the masks are the same
    again = SamVideoTracker(tracker.model)
    again.start(frame, 0, box=[5, 5, 30, 30])
    for i, m in zip(range(1, 10), masks):
        np.testing.assert_array_equal(again.step(frames[i], i), m)


def test_bad_inputs(clip, predictor, tmp_path):
    path, spec, gts = clip
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    with pytest.raises(VideoReadError, match="cannot read"):
        segment_video(bad, tmp_path / "o1", predictor, ScriptedTracker(gts), box=[1, 1, 10, 10])
    with pytest.raises(VideoReadError, match="not found"):
        segment_video(tmp_path / "missing.mp4", tmp_path / "o1", predictor, ScriptedTracker(gts), box=[1, 1, 10, 10])
    with pytest.raises(BoxError, match="outside"):
        segment_video(path, tmp_path / "o2", predictor, ScriptedTracker(gts), box=[500, 500, 600, 600])
    with pytest.raises(DisSamError, match="outside the clip"):
        segment_video(path, tmp_path / "o3", predictor, ScriptedTracker(gts), box=[1, 1, 10, 10], frame=N)
    segment_video(path, tmp_path / "o4", predictor, ScriptedTracker(gts), box=_box(gts[0]), write_videos=False,
                  progress=False)
    with pytest.raises(DisSamError, match="another job"):
        segment_video(path, tmp_path / "o4", predictor, ScriptedTracker(gts), box=[1, 1, 20, 20], progress=False)


def test_text_prompt_with_no_match(clip, predictor, tmp_path):
    from stage1_helpers import tiny_sam3, tiny_tokenizer

    from dissam.stages.sam3 import NoMatchError, Sam3TextStage

    path, spec, gts = clip
    predictor.set_text_stage(Sam3TextStage(tiny_sam3(), tiny_tokenizer()))
    with pytest.raises(NoMatchError, match="matched nothing on frame 0"):
        segment_video(path, tmp_path / "o", predictor, ScriptedTracker(gts), text="bicycle", score_threshold=1.5,
                      progress=False)
    tracker = ScriptedTracker(gts)
    res = segment_video(path, tmp_path / "o2", predictor, tracker, text="bicycle", score_threshold=0.0,
                        write_videos=False, progress=False)
    assert res.computed == N and tracker.calls[0][2] == "box"


def test_cli_video_grabcut(clip, tmp_path, capsys):
    from dissam.cli import main

    path, spec, gts = clip
    out = tmp_path / "cli"
    b = _box(gts[0])
    rc = main(["video", str(path), "--box", ",".join(str(int(v)) for v in b), "--stage1", "grabcut", "-o", str(out),
               "--size", "64", "--device", "cpu", "--batch-size", "3"])
    assert rc == 0
    assert len(list((out / "masks").iterdir())) == N
    assert (out / "clip_alpha.mp4").is_file() and (out / "clip_cutout.webm").is_file()
    assert "6 frame(s)" in capsys.readouterr().out
    assert main(["video", str(path), "--stage1", "grabcut", "-o", str(out)]) == 1  # no prompt


def test_stability_metrics():
    a = np.zeros((10, 10), bool)
    a[2:5, 2:5] = True
    b = shift(a, 2, 1)
    assert b[3:6, 4:7].all() and b.sum() == 9
    assert compensated_iou(a, b, (2, 1)) == 1.0
    assert compensated_iou(a, b, (0, 0)) == pytest.approx(2 / 16)
    s = a.astype(np.uint8) * 200
    assert flicker(s, shift(s, 2, 1), (2, 1), np.ones_like(a)) == 0.0
    assert flicker(s, s, (2, 1), b) == pytest.approx(200 * 7 / 9)


def test_load_tracker_picks_the_video_model_from_the_folder(clip, predictor, tmp_path):
    from stage1_helpers import tiny_sam2, tiny_sam2_video, tiny_sam3_tracker_video

    from dissam.video.trackers import SamVideoTracker, StageTracker, load_tracker

    tiny_sam2_video().save_pretrained(str(tmp_path / "v2"))
    tiny_sam3_tracker_video().save_pretrained(str(tmp_path / "v3"))
    tiny_sam2().save_pretrained(str(tmp_path / "i2"))
    t2 = load_tracker("auto", tmp_path / "v2", "cpu")
    t3 = load_tracker("sam3", tmp_path / "v3", "cpu")
    ti = load_tracker(None, tmp_path / "i2", "cpu")
    assert isinstance(t2, SamVideoTracker) and t2.name == "sam2"
    assert isinstance(t3, SamVideoTracker) and t3.name == "sam3" and t3.size == 112
    assert isinstance(ti, StageTracker) and ti.stage.name == "sam2"
    assert isinstance(load_tracker("grabcut", None), StageTracker)
    path, spec, gts = clip
    res = segment_video(path, tmp_path / "o", predictor, t3, box=_box(gts[0]), frame=2, write_videos=False,
                        progress=False)
    assert res.computed == N
