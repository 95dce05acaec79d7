"""ONNX export parity (refiner, SAM and HQ-SAM encoder and box decoder) and the export cache.

Tolerances, and why: ONNX Runtime runs the same float32 arithmetic as torch but in its own kernels
(other summation orders, fused ops), so the outputs differ by float32 rounding that grows with depth,
not by approximation. We use the fixtures' own tolerances for a faithful port (tests/fixtures/README):
refiner probabilities within 1e-5; SAM embeddings within 1e-4, low-res mask logits within 1e-3, IoU
predictions within 2e-4, and binary masks equal.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from dissam.refiner import Refiner  # noqa: E402
from dissam.runtime import onnx_export as ox  # noqa: E402
from dissam.runtime.runners import ort_session  # noqa: E402
from dissam.stages.sam import load_sam, preprocess_image  # noqa: E402


def _run(path, feed):
    return ort_session(path, threads=1).run(None, {k: v.numpy() if torch.is_tensor(v) else v for k, v in feed.items()})


# ------------------------------------------------------------------------------------- refiner
def test_refiner_parity_fixture_weights_dynamic_batch(tmp_path, isnet_manifest):
    """The DIS-SAM refiner (full ISNetDIS(5)) with the fixtures' weights: ONNX == torch for batch 1 and 3
    (the graph was exported with batch 1: the batch axis is dynamic)."""
    from dissam.models.isnet import ISNetDIS
    from dissam.testing import isnet_fixture_state_dict

    net = ISNetDIS(in_ch=5).eval()
    net.load_state_dict(isnet_fixture_state_dict(isnet_manifest["isnet_dis_in5"]["state_dict"]))
    path = ox.export_refiner(net, tmp_path / "r.onnx", size=64)
    g = torch.Generator().manual_seed(0)
    for n in (1, 3):
        x = torch.rand(n, 5, 64, 64, generator=g) - 0.5
        (d1,) = _run(path, {"x": x})
        with torch.no_grad():
            ref = net(x)[0][0].numpy()
        assert d1.shape == (n, 1, 64, 64)
        np.testing.assert_allclose(d1, ref, atol=1e-5, rtol=0)
        assert ref.std() > 1e-3  # not a constant map: the comparison means something


def test_onnx_refiner_runner_zeroes_dropped_channels(tmp_path, tiny_refiner):
    from dissam.runtime.runners import OnnxRefinerRunner, TorchRefinerRunner

    ref = Refiner(tiny_refiner, Refiner.from_module(tiny_refiner).config, 32, (3,), str(tmp_path / "w.safetensors"))
    x = torch.rand(2, 5, 32, 32) - 0.5
    onnx_out = OnnxRefinerRunner(ref, path=ox.export_refiner(ref, tmp_path / "r.onnx"))(x)
    torch_out = TorchRefinerRunner(ref, channels_last=False)(x)
    x0 = x.clone()
    x0[:, 3] = 0
    np.testing.assert_allclose(onnx_out.numpy(), torch_out.numpy(), atol=1e-5, rtol=0)
    with torch.no_grad():
        np.testing.assert_allclose(onnx_out.numpy(), tiny_refiner(x0)[0][0].numpy(), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------- SAM
@pytest.fixture(scope="module")
def sam_stage(tiny_sam_path):
    return load_sam(tiny_sam_path)


@pytest.fixture(scope="module")
def hq_model():
    """A tiny HQ-SAM, re-initialised: transformers' random init leaves the vision blocks outputting
    zeros (LayerNorm weights 0), which would make any comparison trivially pass."""
    from transformers import SamHQConfig, SamHQModel

    torch.manual_seed(0)
    cfg = SamHQConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, global_attn_indexes=[1]),
        mask_decoder_config=dict(vit_dim=32),
    )
    model = SamHQModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name or "norm" in name.split(".")[-2]:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.normal_(0, 0.02)
    return model


BOXES_1024 = torch.tensor([[[40.0, 60.0, 700.0, 650.0], [300.0, 200.0, 900.0, 720.0], [0.0, 0.0, 128.0, 96.0]]])


@pytest.mark.parametrize("kind", ["sam", "hq"])
def test_sam_encoder_and_decoder_parity(kind, sam_stage, hq_model, image, tmp_path):
    model = sam_stage.model if kind == "sam" else hq_model
    enc = ox.export_sam_encoder(model, tmp_path / "enc.onnx")
    dec = ox.export_sam_decoder(model, tmp_path / "dec.onnx")
    pixels, _ = preprocess_image(image)
    outs = _run(enc, {"pixel_values": pixels})
    with torch.no_grad():
        ref = model.vision_encoder(pixel_values=pixels)
    np.testing.assert_allclose(outs[0], ref.last_hidden_state.numpy(), atol=1e-4, rtol=0)
    assert ref.last_hidden_state.std() > 1e-2
    feed = {"image_embeddings": ref.last_hidden_state, "boxes": BOXES_1024}
    kwargs = {}
    if kind == "hq":
        inter = torch.stack(list(ref.intermediate_embeddings))
        assert outs[1].shape == tuple(inter.shape) == (1, 1, 64, 64, 32)
        np.testing.assert_allclose(outs[1], inter.numpy(), atol=1e-4, rtol=0)
        feed["intermediate_embeddings"] = inter
        kwargs = {"intermediate_embeddings": list(ref.intermediate_embeddings), "hq_token_only": False}
    logits, iou = _run(dec, feed)
    with torch.no_grad():
        r = model(image_embeddings=ref.last_hidden_state, input_boxes=BOXES_1024, multimask_output=True, **kwargs)
    assert logits.shape == (3, 3, 256, 256) and iou.shape == (3, 3)  # 3 boxes (exported with 2), 3 masks
    np.testing.assert_allclose(logits, r.pred_masks[0].numpy(), atol=1e-3, rtol=0)
    np.testing.assert_allclose(iou, r.iou_scores[0].numpy(), atol=2e-4, rtol=0)
    assert ((logits > 0) == (r.pred_masks[0].numpy() > 0)).mean() > 1 - 1e-4


def test_onnx_sam_stage_masks_match_torch(sam_stage, image, boxes_xyxy, tmp_path):
    """SamStage with the ONNX encoder gives the torch stage's masks, with the decoder in torch and in
    ONNX Runtime."""
    from dissam.runtime.runners import OnnxSamDecoderRunner, OnnxSamEncoderRunner

    sam_stage.set_image(image)
    want = sam_stage.predict_batch(boxes_xyxy, return_logits=True)
    path = ox.export_sam_encoder(sam_stage.model, tmp_path / "enc.onnx")
    sam_stage.encoder_runner = OnnxSamEncoderRunner(sam_stage, path=path)
    try:
        sam_stage.set_image(image)
        got = sam_stage.predict_batch(boxes_xyxy, return_logits=True)
        sam_stage.decoder_runner = OnnxSamDecoderRunner(sam_stage, path=ox.export_sam_decoder(sam_stage, tmp_path / "d.onnx"))
        both = sam_stage.predict_batch(boxes_xyxy, return_logits=True)
        single = sam_stage.predict_batch(boxes_xyxy, multimask_output=False)  # not in the graph: torch's decoder
    finally:
        sam_stage.encoder_runner = sam_stage.decoder_runner = None
    for out in (got, both):
        np.testing.assert_allclose(out[2], want[2], atol=1e-3, rtol=0)
        assert ((out[0] > 0) != (want[0] > 0)).mean() < 1e-4
    assert single[0].shape == (len(boxes_xyxy), 1, *image.shape[:2])


@pytest.fixture(scope="module")
def boxes_xyxy(fixtures_dir):
    return np.array(json.loads((fixtures_dir / "sam" / "meta.json").read_text())["boxes_xyxy"], dtype=float)


# --------------------------------------------------------------------------------------- cache
def test_cache_next_to_weights_exports_once(tmp_path, tiny_refiner, monkeypatch):
    from dissam.checkpoints import save_checkpoint
    from dissam.hub.loading import load_refiner
    from dissam.runtime import runners

    ck = save_checkpoint(tmp_path / "w" / "tiny.safetensors", tiny_refiner, metadata={"input_size": 32})
    first = runners.OnnxRefinerRunner(load_refiner(ck))
    assert first.path.parent == tmp_path / "w" / ".dissam-onnx" and first.path.name.startswith("tiny.refiner.")

    def no_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr(ox, "export_refiner", no_export)
    second = runners.OnnxRefinerRunner(load_refiner(ck))
    assert second.path == first.path
    # other weights: another file name
    other = load_refiner(ck)
    with torch.no_grad():
        next(other.net.parameters()).add_(1.0)
    monkeypatch.undo()
    assert runners.OnnxRefinerRunner(other).path != first.path


def test_cache_falls_back_to_user_cache_when_read_only(tmp_path, monkeypatch):
    """The built-in model sits in site-packages, often read-only: its graphs go to the user cache."""
    from dissam.runtime import cache

    (tmp_path / "w.safetensors").write_bytes(b"x")
    monkeypatch.setenv("DISSAM_CACHE", str(tmp_path / "cache"))
    assert cache.cache_dir_for(tmp_path / "w.safetensors") == tmp_path / ".dissam-onnx"
    real = cache._writable
    monkeypatch.setattr(cache, "_writable", lambda folder: False if folder.parent == tmp_path else real(folder))
    assert cache.cache_dir_for(tmp_path / "w.safetensors") == tmp_path / "cache" / "onnx"
    assert cache.cache_dir_for("facebook/sam-vit-base") == tmp_path / "cache" / "onnx"  # a hub id: no folder


# ----------------------------------------------------------------------------------------- CLI
def test_cli_export_writes_graphs_and_manifest(tmp_path, tiny_sam_path, tiny_refiner):
    from dissam.checkpoints import save_checkpoint
    from dissam.cli import main

    ck = save_checkpoint(tmp_path / "tiny.safetensors", tiny_refiner, metadata={"input_size": 32})
    rc = main(["export", "-o", str(tmp_path / "out"), "--refiner", str(ck), "--sam", str(tiny_sam_path)])
    assert rc == 0
    man = json.loads((tmp_path / "out" / "export.json").read_text())
    assert man["opset"] == ox.OPSET and set(man["graphs"]) == {"refiner", "sam-encoder", "sam-decoder"}
    assert man["graphs"]["refiner"]["check_max_abs_diff"] < 1e-5
    for g in man["graphs"].values():
        assert (tmp_path / "out" / g["file"]).is_file()
    sess = ort.InferenceSession(str(tmp_path / "out" / "sam-decoder.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image_embeddings", "boxes"]
    assert sess.get_inputs()[1].shape[1] == "boxes"  # dynamic number of boxes


def test_cli_export_errors(tmp_path, capsys):
    from dissam.cli import main

    assert main(["export", "-o", str(tmp_path), "--parts", "sam-encoder"]) == 1
    assert "needs --sam" in capsys.readouterr().err
    assert main(["export", "-o", str(tmp_path), "--parts", "encoder"]) == 1
    assert "unknown part" in capsys.readouterr().err


def test_external_data_of_big_graphs_goes_to_one_file(tmp_path, tiny_refiner):
    """Over 2 GB the exporter writes one file per tensor; they are gathered into <name>.data so that two
    graphs in one cache folder cannot overwrite each other's weights."""
    import onnx

    path = ox.export_refiner(tiny_refiner, tmp_path / "a" / "r.onnx", size=32)
    split = tmp_path / "split"
    split.mkdir()
    onnx.save_model(onnx.load(str(path)), str(split / "r.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=False, size_threshold=0)
    assert len(list(split.iterdir())) > 10
    ox._one_data_file(split, "r.onnx")
    assert sorted(p.name for p in split.iterdir()) == ["r.onnx", "r.onnx.data"]
    x = torch.rand(1, 5, 32, 32)
    np.testing.assert_allclose(_run(split / "r.onnx", {"x": x})[0], _run(path, {"x": x})[0], atol=1e-6, rtol=0)
