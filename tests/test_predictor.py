"""End-to-end tests of the two-stage predictor and `dissam predict` (tiny SAM + deterministic refiner)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dissam.checkpoints import save_checkpoint
from dissam.cli import main
from dissam.errors import BoxError, DisSamError
from dissam.models.isnet import ISNetDIS
from dissam.predictor import DisSamPredictor, GrabCutStage
from dissam.stages.sam import load_sam

SIZE = 256  # refiner input size for the tests (the paper uses 1024)


@pytest.fixture(scope="module")
def stage(tiny_sam_path):
    return load_sam(tiny_sam_path)


@pytest.fixture()
def predictor(stage, tiny_refiner, image):
    p = DisSamPredictor(stage, tiny_refiner, size=SIZE)
    p.set_image(image)
    return p


class _Capture:
    """Records the refiner's input batches."""

    def __init__(self, module):
        self.inputs = []
        self.handle = module.register_forward_pre_hook(lambda m, args: self.inputs.append(args[0].detach().clone()))

    def close(self):
        self.handle.remove()


def test_refiner_receives_rgb_sam_mask_and_user_box_map(predictor, image, boxes):
    from dissam.transforms import box_map_from_box, clean_inputs, resize_uint8

    cap = _Capture(predictor.refiner.net)
    try:
        res = predictor.predict(box=boxes[0])
    finally:
        cap.close()
    assert len(cap.inputs) == 1
    x = cap.inputs[0]
    assert x.shape == (1, 5, SIZE, SIZE) and x.dtype == torch.float32
    # the whole input equals the shared transform applied to (image, SAM mask, user box)
    ref = clean_inputs(image, res.coarse[None], boxes[:1], SIZE)
    torch.testing.assert_close(x, ref.to(x.dtype), atol=0, rtol=0)
    # channel by channel: RGB normalised to [-0.5, 0.5], then the SAM mask, then the user's box map
    rgb = resize_uint8(torch.from_numpy(image).permute(2, 0, 1).contiguous(), (SIZE, SIZE)).float() / 255 - 0.5
    torch.testing.assert_close(x[0, :3], rgb, atol=1e-6, rtol=0)
    m = resize_uint8(torch.from_numpy(res.coarse.astype(np.uint8) * 255)[None], (SIZE, SIZE)).float() / 255
    torch.testing.assert_close(x[0, 3:4], m, atol=1e-6, rtol=0)
    bm = torch.as_tensor(box_map_from_box(boxes[0], image.shape[:2], (SIZE, SIZE))).float() / 255
    torch.testing.assert_close(x[0, 4:5], bm.reshape(1, SIZE, SIZE), atol=0, rtol=0)
    assert set(torch.unique(x[0, 4]).tolist()) == {0.0, 1.0}


def test_coarse_mask_is_sams_first_multimask_output(predictor, stage, boxes):
    res = predictor.predict(box=boxes[1])
    masks, _, _ = stage.predict(box=boxes[1], multimask_output=True)
    np.testing.assert_array_equal(res.coarse, masks[0])


def test_outputs_shapes_dtypes_and_ranges(predictor, image, boxes):
    res = predictor.predict(box=boxes[0])
    h, w = image.shape[:2]
    assert res.soft.shape == (h, w) and res.soft.dtype == np.float32
    assert res.mask.shape == (h, w) and res.mask.dtype == bool
    assert res.coarse.shape == (h, w) and res.coarse.dtype == bool
    assert 0.0 <= res.soft.min() and res.soft.max() <= 1.0
    np.testing.assert_array_equal(res.mask, res.soft > 0.5)


def test_many_boxes_one_embedding_equal_to_one_by_one(stage, tiny_refiner, image, boxes):
    p = DisSamPredictor(stage, tiny_refiner, size=SIZE)
    p.set_image(image)
    before = stage.encoder_calls
    cap = _Capture(tiny_refiner)
    try:
        many = p.predict(boxes=boxes)
    finally:
        cap.close()
    assert stage.encoder_calls == before + 1
    assert len(cap.inputs) == 1 and cap.inputs[0].shape[0] == 2  # one batched refiner call
    singles = [p.predict(box=b) for b in boxes]
    assert stage.encoder_calls == before + 1  # the embedding is reused
    for a, b in zip(many, singles):
        np.testing.assert_array_equal(a.coarse, b.coarse)
        np.testing.assert_allclose(a.soft, b.soft, atol=1e-5)


class _NoSam:
    def set_image(self, image):
        raise AssertionError("stage 1 must not run in refine-only mode")

    def coarse_masks(self, boxes, selection="first"):
        raise AssertionError("stage 1 must not run in refine-only mode")


def test_refine_only_mode_skips_sam(tiny_refiner, image, boxes, tmp_path):
    p = DisSamPredictor(_NoSam(), tiny_refiner, size=SIZE).set_image(image)
    given = np.zeros(image.shape[:2], np.uint8)
    given[100:300, 120:380] = 255
    res = p.predict(box=boxes[0], coarse_mask=given)
    np.testing.assert_array_equal(res.coarse, given > 127)
    Image.fromarray(given).save(tmp_path / "m.png")
    res2 = p.predict(box=boxes[0], coarse_mask=tmp_path / "m.png")
    np.testing.assert_allclose(res2.soft, res.soft, atol=0)
    with pytest.raises(DisSamError, match="coarse_mask has shape"):
        p.predict(box=boxes[0], coarse_mask=np.zeros((5, 5), bool))
    with pytest.raises(DisSamError, match="no stage 1"):
        DisSamPredictor(None, tiny_refiner, size=SIZE).set_image(image).predict(box=boxes[0])


def test_odd_size_and_exif_rotated_input(stage, tiny_refiner, tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (61, 97, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # displayed rotated by 90°: 97 rows x 61 columns
    img.save(tmp_path / "rot.jpg", exif=exif)
    p = DisSamPredictor(stage, tiny_refiner, size=SIZE).set_image(tmp_path / "rot.jpg")
    assert p.image.shape == (97, 61, 3)
    res = p.predict(box=[5, 10, 50, 90])
    assert res.soft.shape == (97, 61) and res.coarse.shape == (97, 61)


def test_bad_boxes_and_state(stage, tiny_refiner, image):
    p = DisSamPredictor(stage, tiny_refiner, size=SIZE)
    with pytest.raises(DisSamError, match="set_image"):
        p.predict(box=[0, 0, 10, 10])
    p.set_image(image)
    with pytest.raises(BoxError, match="inverted"):
        p.predict(box=[50, 50, 10, 10])
    with pytest.raises(BoxError, match="outside"):
        p.predict(box=[1000, 1000, 1200, 1200])
    with pytest.raises(DisSamError, match="exactly one"):
        p.predict()
    clipped = p.predict(box=[-20, -20, 100, 100])
    np.testing.assert_array_equal(clipped.box, [0, 0, 100, 100])
    with pytest.raises(DisSamError, match="5-channel"):
        DisSamPredictor(stage, ISNetDIS(in_ch=3, width=0.25))


def test_otsu_threshold(stage, tiny_refiner, image, boxes):
    p = DisSamPredictor(stage, tiny_refiner, size=SIZE, threshold="otsu").set_image(image)
    res = p.predict(box=boxes[0])
    assert res.mask.dtype == bool
    u8 = (res.soft * 255).clip(0, 255).astype(np.uint8)
    if u8.max() > u8.min():
        assert res.mask.any()


def test_grabcut_stage_inside_box(image):
    g = GrabCutStage(iterations=2)
    g.set_image(image)
    m = g.coarse_masks(np.array([[100, 80, 400, 360]], float))
    assert m.shape == (1, *image.shape[:2]) and m.dtype == bool
    assert not m[0, :70].any() and not m[0, :, 410:].any()


# ---------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def refiner_ckpt(tmp_path_factory, tiny_refiner):
    return save_checkpoint(tmp_path_factory.mktemp("ref") / "tiny.safetensors", tiny_refiner,
                           metadata={"input_size": 128})


def test_cli_writes_every_promised_file_and_reports_failures(tmp_path, fixtures_dir, tiny_sam_path, refiner_ckpt,
                                                             boxes, capsys):
    img = fixtures_dir / "sam" / "image.png"
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    rc = main(["predict", str(img), str(bad), str(tmp_path / "missing.png"), "--sam", str(tiny_sam_path),
               "--refiner", str(refiner_ckpt), "--box", ",".join(str(int(v)) for v in boxes[0]),
               "--box", ",".join(str(int(v)) for v in boxes[1]), "-o", str(out),
               "--rgba", "--overlay", "--soft", "--save-coarse"])
    assert rc == 1  # two inputs failed
    printed = capsys.readouterr().out
    assert "2 image(s) failed" in printed and "broken.jpg" in printed and "missing.png" in printed
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))  # .dissam-done: resume markers
    expected = sorted(f"image_{k}{s}.png" for k in (0, 1) for s in ("", "_soft", "_cutout", "_overlay", "_coarse"))
    assert names == expected
    assert sorted(p.name for p in (out / ".dissam-done").iterdir()) == ["image.json"]  # failed inputs: no marker
    mask = np.asarray(Image.open(out / "image_0.png"))
    assert mask.shape == (480, 640) and set(np.unique(mask)) <= {0, 255}
    cut = Image.open(out / "image_1_cutout.png")
    assert cut.mode == "RGBA" and cut.size == (640, 480)
    assert Image.open(out / "image_0_overlay.png").size == (640, 480)


def test_cli_prompts_file_and_xywh(tmp_path, fixtures_dir, tiny_sam_path, refiner_ckpt):
    img = fixtures_dir / "sam" / "image.png"
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps({"image": [{"type": "rectangle", "data": [100, 80, 300, 280], "label": 1}]}))
    out = tmp_path / "out"
    rc = main(["predict", str(img), "--sam", str(tiny_sam_path), "--refiner", str(refiner_ckpt),
               "--prompts", str(prompts), "--box-format", "xywh", "-o", str(out), "--threshold", "otsu"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["image_0.png"]


def test_cli_no_box_is_a_per_image_error(tmp_path, fixtures_dir, tiny_sam_path, refiner_ckpt, capsys):
    rc = main(["predict", str(fixtures_dir / "sam" / "image.png"), "--sam", str(tiny_sam_path),
               "--refiner", str(refiner_ckpt), "-o", str(tmp_path / "o")])
    assert rc == 1 and "no box given" in capsys.readouterr().out


def test_cli_missing_weights_offline(tmp_path, fixtures_dir, refiner_ckpt, monkeypatch, capsys):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # read at import time by huggingface_hub
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    img = str(fixtures_dir / "sam" / "image.png")
    rc = main(["predict", img, "--sam", "facebook/sam-vit-large", "--refiner", str(refiner_ckpt),
               "--box", "1,1,50,50", "-o", str(tmp_path / "o")])
    assert rc == 1
    assert "sam-vit-large" in capsys.readouterr().err
    rc = main(["predict", img, "--sam", str(tmp_path / "sam_vit_l_0b3195.pth"), "--refiner", str(refiner_ckpt),
               "--box", "1,1,50,50", "-o", str(tmp_path / "o")])
    assert rc == 1 and "not found" in capsys.readouterr().err
    rc = main(["predict", img, "--refiner", str(tmp_path / "nope.pth"), "--box", "1,1,50,50", "-o", str(tmp_path / "o")])
    assert rc == 1 and "not found" in capsys.readouterr().err


def test_cli_cuda_fails_loudly_without_cuda(tmp_path, fixtures_dir, refiner_ckpt, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    rc = main(["predict", str(fixtures_dir / "sam" / "image.png"), "--refiner", str(refiner_ckpt),
               "--box", "1,1,50,50", "--device", "cuda", "-o", str(tmp_path / "o")])
    assert rc == 1 and "CUDA is not available" in capsys.readouterr().err


@pytest.mark.parametrize("dropout,zeroed", [([1.0, 0.0], [3]), ([0.0, 1.0], [4]), ([1.0, 1.0], [3, 4]), ([0.5, 0.0], [])])
def test_ablation_models_get_the_prompts_they_were_trained_with(tmp_path, image, boxes, dropout, zeroed):
    """A checkpoint trained with prompt_dropout 1 for a channel (Table 2's box-only / mask-only /
    no-prompt rows) is fed zeros there, by the predictor and by the benchmark; others are untouched."""
    from dissam.hub.loading import load_refiner
    from dissam.models.isnet import build_refiner

    torch.manual_seed(3)
    ck = save_checkpoint(
        tmp_path / "abl.safetensors",
        build_refiner("dis-sam-compact"),
        metadata={"train_config": {"data": {"prompt_dropout": dropout}}, "input_size": SIZE},
    )
    ref = load_refiner(ck)
    assert list(ref.dropped_channels) == zeroed and ref.input_size == SIZE
    net = ref.net
    p = DisSamPredictor(_NoSam(), ref).set_image(image)
    given = np.zeros(image.shape[:2], np.uint8)
    given[100:300, 120:380] = 255
    cap = _Capture(net)
    try:
        p.predict(box=boxes[0], coarse_mask=given)
    finally:
        cap.close()
    x = cap.inputs[0][0]
    for ch in (3, 4):
        assert (x[ch].abs().max() == 0) == (ch in zeroed), ch
