// dissam app: the page. Plain JavaScript, nothing loaded from elsewhere.
// Boxes are kept in image pixels (XYXY, (x1, y1) inclusive) of the image the server decoded;
// the canvas shows that image scaled to fit, so every mouse position is divided by `scale`.
// Each object is a box and/or clicks: {x0, y0, x1, y1, points: [{x, y, label}]}, or with no box
// {nobox: true, points: [...]}. Clicks: click = on the object (label 1), shift-click or right-click =
// not on it (label 0); a click goes to the box it is in, else to the selected object, else it starts
// an object of clicks alone. Every edit can be undone (Ctrl+Z) and redone (Ctrl+Shift+Z, Ctrl+Y);
// after a click the result is computed again at once (the server keeps the image's embedding).
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const HANDLE = 7; // px on screen: corner/edge grab distance
const COLORS = ["#ff4040", "#40a0ff", "#40dc60", "#ffc000", "#c850ff", "#00dcdc"];
const POINT_R = 6; // px on screen: a click's marker
const HISTORY = 100; // edits that can be undone

const state = {
  image: null,      // HTMLImageElement of the decoded image
  imageId: null,    // server's id (sha256 of the upload)
  file: null,       // the uploaded File, to send again if the server forgot the image
  example: null,
  width: 0, height: 0,
  scale: 1,         // image pixels per canvas pixel
  boxes: [],        // objects: [{x0, y0, x1, y1, points}] or [{nobox: true, points}], image pixels
  selected: -1,
  drag: null,       // {mode: "new"|"move"|"resize"|"point", index, edges, start, orig, before}
  undo: [], redo: [], // snapshots (JSON of `boxes`) before / after each edit
  busy: false,
  again: false,     // a click came while a request ran: run once more when it ends
  shown: false,     // results are on the page (a click then updates them)
  limits: null,     // the server's limits (/api/info)
  urls: [],         // blob URLs of the last results, revoked on the next run
};

function showError(msg) {
  const el = $("error");
  el.textContent = msg;
  el.hidden = !msg;
}
function setStatus(msg) { $("status").textContent = msg; }

async function api(path, opts) {
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    throw new Error("cannot reach the dissam server: " + e.message);
  }
  let body = null;
  try { body = await resp.json(); } catch (e) { /* not JSON */ }
  if (!resp.ok) {
    const err = new Error((body && body.error) || ("HTTP " + resp.status));
    err.status = resp.status;
    throw err;
  }
  return body;
}

// ------------------------------------------------------------------ models and examples
async function loadInfo() {
  try {
    const info = await api("/api/info");
    state.limits = info.limits;
    const m = info.models;
    // stage 1 by its registry label, its weights where they are not the label already, and its licence
    const stage1 = m.sam.startsWith(m.stage1_label) ? m.sam : `${m.stage1_label}, ${m.sam}`;
    const licence = m.stage1_license ? ` (licence: ${m.stage1_license})` : "";
    $("models").textContent = `stage 1: ${stage1}${licence} · refiner: ${m.refiner} (${m.refiner_size}²) · device: ${m.device}`;
    if (m.notice) { $("notice").textContent = m.notice; $("notice").hidden = false; }
    for (const name of info.examples) {
      const opt = document.createElement("option");
      opt.value = name; opt.textContent = name;
      $("example").appendChild(opt);
    }
  } catch (e) { showError(e.message); }
}

// ------------------------------------------------------------------ image
async function sendImage(form) {
  setStatus("uploading and decoding…");
  const out = await api("/api/image", { method: "POST", body: form });
  const img = new Image();
  await new Promise((resolve, reject) => {
    img.onload = resolve; img.onerror = () => reject(new Error("the browser cannot show the decoded image"));
    img.src = out.preview;
  });
  return [out, img];
}

async function useImage(form, file, example) {
  showError("");
  try {
    const [out, img] = await sendImage(form);
    Object.assign(state, { image: img, imageId: out.image_id, file, example, width: out.width, height: out.height,
                           boxes: [], selected: -1, undo: [], redo: [], shown: false });
    $("results").replaceChildren();
    fitCanvas();
    setStatus(`${out.width}×${out.height} image loaded. Drag a box around the object, then press Segment; ` +
              "click to add a part, shift-click or right-click to remove one.");
  } catch (e) {
    showError(e.message);
    setStatus(state.image ? "the previous image is still loaded" : "upload an image");
  }
  refresh();
}

$("file").addEventListener("change", () => {
  const f = $("file").files[0];
  if (!f) return;
  const max = state.limits && state.limits.max_upload_bytes;
  if (max && f.size > max) {  // the server refuses it too; saying so here spares the upload
    $("file").value = "";
    showError(`the upload is too large (${(f.size / 2 ** 20).toFixed(1)} MiB); the limit is ${max / 2 ** 20} MiB`);
    return;
  }
  const form = new FormData();
  form.append("image", f);
  $("file").value = "";
  $("example").value = "";
  useImage(form, f, null);
});

$("example").addEventListener("change", () => {
  const name = $("example").value;
  if (!name) return;
  const form = new FormData();
  form.append("example", name);
  useImage(form, null, name);
});

function fitCanvas() {
  const maxW = Math.min(900, document.body.clientWidth - 320);
  const maxH = Math.max(300, window.innerHeight - 240);
  const s = Math.max(state.width / Math.max(maxW, 200), state.height / maxH, 1e-9);
  canvas.width = Math.round(state.width / s);
  canvas.height = Math.round(state.height / s);
  state.scale = state.width / canvas.width;
}
window.addEventListener("resize", () => { if (state.image) { fitCanvas(); draw(); } });

// ------------------------------------------------------------------ drawing
function draw() {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.image) return;
  ctx.drawImage(state.image, 0, 0, canvas.width, canvas.height);
  state.boxes.forEach((b, i) => {
    const s = state.scale;
    drawPoints(b, i);
    if (b.nobox) return;
    const x = b.x0 / s, y = b.y0 / s, w = (b.x1 - b.x0) / s, h = (b.y1 - b.y0) / s;
    ctx.lineWidth = i === state.selected ? 3 : 2;
    ctx.strokeStyle = COLORS[i % COLORS.length];
    ctx.strokeRect(x, y, w, h);
    ctx.fillStyle = COLORS[i % COLORS.length];
    ctx.fillText(String(i + 1), x + 4, y + 12);
    if (i === state.selected) {
      for (const [cx, cy] of [[x, y], [x + w, y], [x, y + h], [x + w, y + h]]) ctx.fillRect(cx - 4, cy - 4, 8, 8);
    }
  });
}

// a click's marker: green with "+" on the object, red with "−" off it; white rim, thicker when selected
function drawPoints(b, i) {
  for (const pt of b.points || []) {
    const x = pt.x / state.scale, y = pt.y / state.scale;
    ctx.beginPath();
    ctx.arc(x, y, POINT_R, 0, 2 * Math.PI);
    ctx.fillStyle = pt.label ? "#20c040" : "#ff2a2a";
    ctx.fill();
    ctx.lineWidth = i === state.selected ? 2.5 : 1.5;
    ctx.strokeStyle = "#ffffff";
    ctx.stroke();
    ctx.beginPath();
    ctx.moveTo(x - 3, y); ctx.lineTo(x + 3, y);
    if (pt.label) { ctx.moveTo(x, y - 3); ctx.lineTo(x, y + 3); }
    ctx.lineWidth = 1.5;
    ctx.stroke();
  }
}

function describe(b) {
  const pos = (b.points || []).filter((p) => p.label).length, neg = (b.points || []).length - pos;
  const clicks = pos + neg ? ` · ${pos}+ ${neg}−` : "";
  return (b.nobox ? "clicks only" : rounded(b).join(", ")) + clicks;
}

function refresh() {
  draw();
  const list = $("boxes");
  list.replaceChildren();
  state.boxes.forEach((b, i) => {
    const li = document.createElement("li");
    li.textContent = describe(b);
    if (i === state.selected) li.className = "selected";
    li.addEventListener("click", () => { state.selected = i; refresh(); });
    list.appendChild(li);
  });
  $("run").disabled = state.busy || !state.image || state.boxes.length === 0;
  $("clear").disabled = state.boxes.length === 0;
  $("delete").disabled = state.selected < 0;
  $("undo").disabled = state.undo.length === 0 || !state.image;
  $("redo").disabled = state.redo.length === 0 || !state.image;
}

// image pixels, XYXY integers as sent to the server
function rounded(b) {
  const cx = (v) => Math.min(Math.max(Math.round(v), 0), state.width - 1);
  const cy = (v) => Math.min(Math.max(Math.round(v), 0), state.height - 1);
  return [cx(Math.min(b.x0, b.x1)), cy(Math.min(b.y0, b.y1)), cx(Math.max(b.x0, b.x1)), cy(Math.max(b.y0, b.y1))];
}

// ------------------------------------------------------------------ mouse: new, move, resize
function imagePoint(ev) {
  const r = canvas.getBoundingClientRect();
  const sx = canvas.width / r.width, sy = canvas.height / r.height; // CSS may shrink the canvas
  return { x: (ev.clientX - r.left) * sx * state.scale, y: (ev.clientY - r.top) * sy * state.scale };
}

function hitPoint(p) {
  const tol = (POINT_R + 2) * state.scale;
  for (let i = state.boxes.length - 1; i >= 0; i--) {
    const pts = state.boxes[i].points || [];
    for (let j = pts.length - 1; j >= 0; j--) {
      if (Math.hypot(pts[j].x - p.x, pts[j].y - p.y) <= tol) return { index: i, point: j };
    }
  }
  return null;
}

function hit(p) {
  const tol = HANDLE * state.scale;
  for (let i = state.boxes.length - 1; i >= 0; i--) {
    const b = state.boxes[i];
    if (b.nobox) continue;
    const inX = p.x > b.x0 - tol && p.x < b.x1 + tol, inY = p.y > b.y0 - tol && p.y < b.y1 + tol;
    if (!inX || !inY) continue;
    const edges = { l: Math.abs(p.x - b.x0) < tol, r: Math.abs(p.x - b.x1) < tol,
                    t: Math.abs(p.y - b.y0) < tol, b: Math.abs(p.y - b.y1) < tol };
    if (edges.l || edges.r || edges.t || edges.b) return { index: i, mode: "resize", edges };
    return { index: i, mode: "move" };
  }
  return null;
}

// ------------------------------------------------------------------ edits, undo and redo
const snapshot = () => JSON.stringify(state.boxes);

function commit(before) {  // an edit happened if the objects differ from `before`
  if (before === snapshot()) return false;
  state.undo.push(before);
  if (state.undo.length > HISTORY) state.undo.shift();
  state.redo = [];
  return true;
}

function restore(from, to) {
  if (!from.length || !state.image) return;
  to.push(snapshot());
  state.boxes = JSON.parse(from.pop());
  state.selected = Math.min(state.selected, state.boxes.length - 1);
  refresh();
  if (state.shown) rerun();
}
const undo = () => restore(state.undo, state.redo);
const redo = () => restore(state.redo, state.undo);

function addPoint(p, label, target) {
  const pt = { x: Math.min(Math.max(p.x, 0), state.width - 1), y: Math.min(Math.max(p.y, 0), state.height - 1), label };
  if (target >= 0 && target < state.boxes.length) {
    state.boxes[target].points = [...(state.boxes[target].points || []), pt];
    state.selected = target;
  } else {
    state.boxes.push({ nobox: true, points: [pt] });
    state.selected = state.boxes.length - 1;
  }
}

// the object a click at `p` belongs to: the innermost box it is in, else the selected object
function clickTarget(p) {
  for (let i = state.boxes.length - 1; i >= 0; i--) {
    const b = state.boxes[i];
    if (!b.nobox && p.x >= b.x0 && p.x <= b.x1 && p.y >= b.y0 && p.y <= b.y1) return i;
  }
  return state.selected;
}

canvas.addEventListener("contextmenu", (ev) => {  // right-click: a negative click
  ev.preventDefault();
  if (!state.image || state.drag) return;
  const before = snapshot();
  const p = imagePoint(ev);
  addPoint(p, 0, clickTarget(p));
  if (commit(before)) rerun();
  refresh();
});

canvas.addEventListener("mousedown", (ev) => {
  if (!state.image || ev.button !== 0) return;
  const p = imagePoint(ev);
  const before = snapshot(), prev = state.selected;
  const onPoint = hitPoint(p);
  const h = onPoint ? null : hit(p);
  if (onPoint) {
    state.selected = onPoint.index;
    const orig = { ...state.boxes[onPoint.index].points[onPoint.point] };
    state.drag = { mode: "point", ...onPoint, start: p, orig, before, prev };
  } else if (h) {
    state.selected = h.index;
    state.drag = { ...h, start: p, orig: { ...state.boxes[h.index] }, before, prev };
  } else {
    state.boxes.push({ x0: p.x, y0: p.y, x1: p.x, y1: p.y, points: [] });
    state.selected = state.boxes.length - 1;
    state.drag = { mode: "new", index: state.selected, start: p, before, prev };
  }
  state.drag.shift = ev.shiftKey;
  canvas.focus();
  refresh();
});

window.addEventListener("mousemove", (ev) => {
  const d = state.drag;
  if (!d) {
    if (state.image && ev.target === canvas) {
      const p = imagePoint(ev);
      const h = hitPoint(p) ? { mode: "point" } : hit(p);
      canvas.style.cursor = !h ? "crosshair" : h.mode === "point" ? "grab" : h.mode === "move" ? "move" : "nwse-resize";
    }
    return;
  }
  const p = imagePoint(ev);
  const b = state.boxes[d.index];
  const clampX = (v) => Math.min(Math.max(v, 0), state.width - 1);
  const clampY = (v) => Math.min(Math.max(v, 0), state.height - 1);
  d.moved = d.moved || Math.hypot(p.x - d.start.x, p.y - d.start.y) / state.scale >= 3;
  if (d.mode === "point") {
    if (d.moved) Object.assign(b.points[d.point], { x: clampX(p.x), y: clampY(p.y) });
  } else if (d.mode === "new") {
    b.x0 = d.start.x; b.y0 = d.start.y; b.x1 = clampX(p.x); b.y1 = clampY(p.y);
  } else if (d.mode === "move") {
    const w = d.orig.x1 - d.orig.x0, h = d.orig.y1 - d.orig.y0;
    const x0 = Math.min(Math.max(d.orig.x0 + p.x - d.start.x, 0), state.width - 1 - w);
    const y0 = Math.min(Math.max(d.orig.y0 + p.y - d.start.y, 0), state.height - 1 - h);
    Object.assign(b, { x0, y0, x1: x0 + w, y1: y0 + h });
  } else {
    if (d.edges.l) b.x0 = clampX(p.x);
    if (d.edges.r) b.x1 = clampX(p.x);
    if (d.edges.t) b.y0 = clampY(p.y);
    if (d.edges.b) b.y1 = clampY(p.y);
  }
  refresh();
});

window.addEventListener("mouseup", () => {
  const d = state.drag;
  if (!d) return;
  state.drag = null;
  const b = state.boxes[d.index];
  let clicked = false;  // a click, not a drag: it edits the clicks, and the result follows
  if (d.mode === "point") {
    if (!d.moved) {                             // a click on a marker removes it
      b.points.splice(d.point, 1);
      if (b.nobox && b.points.length === 0) { state.boxes.splice(d.index, 1); state.selected = -1; }
    }
    clicked = true;
  } else if (!d.moved && d.mode === "new") {    // a click on the image outside every box
    state.boxes.splice(d.index, 1);
    state.selected = d.prev;
    addPoint(d.start, d.shift ? 0 : 1, d.prev);
    clicked = true;
  } else if (!d.moved) {                        // a click inside a box (or on its edge): its click
    Object.assign(b, d.orig);
    addPoint(d.start, d.shift ? 0 : 1, d.index);
    clicked = true;
  } else {
    const [x0, y0, x1, y1] = rounded(b);
    if (x1 - x0 < 2 || y1 - y0 < 2) {
      if (d.mode === "new") { state.boxes.splice(d.index, 1); state.selected = d.prev; }
    } else {
      Object.assign(b, { x0: Math.min(b.x0, b.x1), x1: Math.max(b.x0, b.x1),
                         y0: Math.min(b.y0, b.y1), y1: Math.max(b.y0, b.y1) });
    }
  }
  if (commit(d.before) && clicked) rerun();
  refresh();
});

function deleteSelected() {
  if (state.selected < 0) return;
  const before = snapshot();
  state.boxes.splice(state.selected, 1);
  state.selected = -1;
  commit(before);
  refresh();
}
canvas.addEventListener("keydown", (ev) => {
  if (ev.key === "Delete" || ev.key === "Backspace") { ev.preventDefault(); deleteSelected(); }
});
document.addEventListener("keydown", (ev) => {
  if (!(ev.ctrlKey || ev.metaKey) || ev.target.tagName === "INPUT") return;
  const key = ev.key.toLowerCase();
  if (key === "z" && !ev.shiftKey) { ev.preventDefault(); undo(); }
  else if (key === "y" || (key === "z" && ev.shiftKey)) { ev.preventDefault(); redo(); }
});
$("delete").addEventListener("click", deleteSelected);
$("undo").addEventListener("click", undo);
$("redo").addEventListener("click", redo);
$("clear").addEventListener("click", () => {
  const before = snapshot();
  state.boxes = []; state.selected = -1;
  commit(before);
  refresh();
});
$("value").addEventListener("input", () => { $("value-out").textContent = Number($("value").value).toFixed(2); });

// ------------------------------------------------------------------ run and results
function thresholdMode() { return document.querySelector("input[name=threshold]:checked").value; }

// the request: boxes (null for an object of clicks alone) and, when there are clicks, one list of
// [x, y, label] per object (integer pixels of the image)
function request() {
  const body = { image_id: state.imageId, boxes: state.boxes.map((b) => (b.nobox ? null : rounded(b))),
                 threshold: thresholdMode(), value: Number($("value").value), fg_estimation: $("fg").checked };
  if (state.boxes.some((b) => b.nobox || (b.points || []).length)) {
    body.points = state.boxes.map((b) => (b.points || []).map((p) => [
      Math.min(Math.max(Math.round(p.x), 0), state.width - 1),
      Math.min(Math.max(Math.round(p.y), 0), state.height - 1), p.label]));
  }
  return body;
}

async function predictOnce() {
  return api("/api/predict", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(request()),
  });
}

// after a click, undo or redo: run again (once more after the running request, if one runs)
function rerun() {
  if (!state.imageId || state.boxes.length === 0) return;
  if (state.busy) { state.again = true; return; }
  segment();
}

$("run").addEventListener("click", () => segment());

async function segment() {
  if (!state.imageId || state.boxes.length === 0) return;
  state.busy = true; state.again = false; refresh(); showError("");
  setStatus(`segmenting ${state.boxes.length} object(s)…`);
  try {
    let out;
    try {
      out = await predictOnce();
    } catch (e) {
      if (e.status !== 404 || !(state.file || state.example)) throw e;
      const form = new FormData();               // the server forgot the image: send it again
      if (state.file) form.append("image", state.file); else form.append("example", state.example);
      const [info] = await sendImage(form);
      state.imageId = info.image_id;
      out = await predictOnce();
    }
    showResults(out);
    setStatus(`done in ${out.timings.total_ms} ms` + (out.embedding_cached ? " (image embedding reused)" : ""));
  } catch (e) {
    showError(e.message);
    setStatus("the request failed; the page and the server are still usable");
  } finally {
    state.busy = false; refresh();
    if (state.again) rerun();
  }
}

function blobUrl(b64, type) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  state.urls.push(url);
  return url;
}

function figure(url, caption, cls, id) {
  const fig = document.createElement("figure");
  const img = document.createElement("img");
  img.src = url; img.alt = caption; img.id = id;
  if (cls) img.className = cls;
  const cap = document.createElement("figcaption");
  cap.textContent = caption;
  fig.append(img, cap);
  return fig;
}

function link(url, name, text, id) {
  const a = document.createElement("a");
  a.href = url; a.download = name; a.textContent = text; a.id = id;
  return a;
}

function showResults(out) {
  for (const u of state.urls) URL.revokeObjectURL(u);
  state.urls = [];
  const box = $("results");
  box.replaceChildren();
  state.shown = true;
  const stem = (state.file ? state.file.name.replace(/\.[^.]*$/, "") : state.example) || "image";
  out.results.forEach((r, i) => {
    const sec = document.createElement("div");
    sec.className = "result"; sec.id = `result-${i}`;
    sec.dataset.box = JSON.stringify(r.box);
    sec.dataset.pixels = String(r.foreground_pixels);
    const h = document.createElement("h3");
    const clicks = r.points && r.points.length ? ` · ${r.points.length} click(s)` : "";
    h.textContent = `box ${i + 1}: [${r.box.map((v) => Math.round(v)).join(", ")}]${clicks} · ` +
                    `${r.foreground_pixels} foreground pixels`;
    const urls = { mask: blobUrl(r.mask, "image/png"), soft: blobUrl(r.soft, "image/png"),
                   coarse: blobUrl(r.coarse, "image/png"), overlay: blobUrl(r.overlay, "image/png"),
                   cutout: blobUrl(r.cutout, "image/png") };
    const tiles = document.createElement("div");
    tiles.className = "tiles";
    tiles.append(figure(urls.coarse, "coarse mask (stage 1)", "", `coarse-${i}`),
                 figure(urls.soft, "refined soft map", "", `soft-${i}`),
                 figure(urls.overlay, "overlay", "", `overlay-${i}`),
                 figure(urls.cutout, "cut-out", "checker", `cutout-${i}`));
    const dl = document.createElement("div");
    dl.className = "downloads";
    dl.append(link(urls.mask, `${stem}_${i}.png`, "mask PNG", `dl-mask-${i}`),
              link(urls.soft, `${stem}_${i}_soft.png`, "soft map", `dl-soft-${i}`),
              link(urls.cutout, `${stem}_${i}_cutout.png`, "RGBA cut-out", `dl-cutout-${i}`));
    sec.append(h, tiles, dl);
    box.appendChild(sec);
  });
  const t = $("timings");
  t.replaceChildren();
  const names = { queue_ms: "waiting in queue", embedding_ms: "image embedding (stage 1)",
                  decoder_ms: "masks from the boxes and clicks (stage 1)",
                  refiner_ms: "refiner", threshold_ms: "threshold", cutout_ms: "cut-out (foreground estimation)",
                  encode_ms: "PNG encoding", total_ms: "total (server)" };
  for (const [k, label] of Object.entries(names)) {
    if (!(k in out.timings)) continue;
    const tr = document.createElement("tr");
    const a = document.createElement("td"), b = document.createElement("td");
    a.textContent = label + (k === "embedding_ms" && out.embedding_cached ? " (kept)" : "");
    b.textContent = `${out.timings[k]} ms`; b.className = "num";
    tr.append(a, b); t.appendChild(tr);
  }
  box.dataset.done = String(Date.now());
}

loadInfo();
refresh();
