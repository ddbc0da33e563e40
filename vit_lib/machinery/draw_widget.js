// The drawing pad of lesson 08 (vit_lib/machinery/draw_widget.py): an anywidget front end.
// Strokes are drawn here, in the browser, with pointer events (mouse, finger or pen); only the
// finished picture goes to the kernel, as a PNG data: URL in the `drawing` trait, once per
// stroke. An uploaded file goes as a data: URL in `upload`. The kernel answers in `result`
// (text) and `preview` (the prepared 28x28 digit as a PNG data: URL).

const MAX_UPLOAD_BYTES = 8 * 1024 * 1024;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

function render({ model, el }) {
  const size = model.get("size");
  const root = element("div", "vit-pad");
  const canvas = element("canvas", "vit-pad-canvas");
  canvas.width = size;
  canvas.height = size;
  canvas.style.width = `${size}px`;
  canvas.style.height = `${size}px`;
  canvas.setAttribute("aria-label", "drawing pad: draw one digit");
  const ctx = canvas.getContext("2d");

  const side = element("div", "vit-pad-side");
  const previewLabel = element("div", "vit-pad-caption", "what the model sees (28x28)");
  const preview = element("img", "vit-pad-preview");
  preview.alt = "the prepared 28x28 digit";
  const result = element("div", "vit-pad-result");
  const buttons = element("div", "vit-pad-buttons");
  const clearButton = element("button", "vit-pad-clear", "Clear");
  const uploadButton = element("button", "vit-pad-upload", "Upload a picture…");
  const fileInput = element("input", "vit-pad-file");
  fileInput.type = "file";
  fileInput.accept = "image/*";
  fileInput.style.display = "none";
  buttons.append(clearButton, uploadButton, fileInput);
  side.append(previewLabel, preview, result, buttons);
  root.append(canvas, side);
  el.append(root);

  function blank() {
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }

  function point(event) {      // page pixels -> canvas pixels (inside the border)
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left - canvas.clientLeft) * canvas.width / canvas.clientWidth,
            (event.clientY - box.top - canvas.clientTop) * canvas.height / canvas.clientHeight];
  }

  function dot([x, y]) {
    ctx.fillStyle = "#000000";
    ctx.beginPath();
    ctx.arc(x, y, model.get("pen") / 2, 0, 2 * Math.PI);
    ctx.fill();
  }

  function segment(a, b) {
    ctx.strokeStyle = "#000000";
    ctx.lineWidth = model.get("pen");
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(a[0], a[1]);
    ctx.lineTo(b[0], b[1]);
    ctx.stroke();
  }

  function showPicture(url) {   // an uploaded picture, fitted into the pad (white around it)
    const picture = new Image();
    picture.onload = () => {
      const scale = Math.min(canvas.width / picture.width, canvas.height / picture.height);
      const w = picture.width * scale, h = picture.height * scale;
      blank();
      ctx.drawImage(picture, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
    };
    picture.src = url;
  }

  function send(name, value) {
    model.set(name, value);
    model.save_changes();
  }

  let last = null;          // the previous point of the stroke being drawn, or null
  function down(event) {
    event.preventDefault();
    canvas.setPointerCapture?.(event.pointerId);
    last = point(event);
    dot(last);
  }
  function move(event) {
    if (last === null) return;
    event.preventDefault();
    const p = point(event);
    segment(last, p);
    last = p;
  }
  function up() {
    if (last === null) return;
    last = null;
    result.textContent = "thinking…";
    send("drawing", canvas.toDataURL("image/png"));
  }
  canvas.addEventListener("pointerdown", down);
  canvas.addEventListener("pointermove", move);
  canvas.addEventListener("pointerup", up);
  canvas.addEventListener("pointercancel", up);

  clearButton.addEventListener("click", () => {
    blank();
    send("drawing", "");
  });
  uploadButton.addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    const file = fileInput.files && fileInput.files[0];
    fileInput.value = "";
    if (!file) return;
    if (file.size > MAX_UPLOAD_BYTES) {
      result.textContent = `${file.name} is ${(file.size / 1048576).toFixed(1)} MB; ` +
        "send a picture under 8 MB (crop it, or save it smaller)";
      return;
    }
    const reader = new FileReader();
    reader.onload = () => {
      result.textContent = "thinking…";
      showPicture(reader.result);
      model.set("upload_name", file.name);
      send("upload", reader.result);
    };
    reader.onerror = () => { result.textContent = `could not read ${file.name}`; };
    reader.readAsDataURL(file);
  });

  function show() {
    result.textContent = model.get("result");
    root.dataset.label = model.get("label");
    const url = model.get("preview");
    preview.style.visibility = url ? "visible" : "hidden";
    if (url) preview.src = url;
  }
  model.on("change:result", show);
  model.on("change:preview", show);
  model.on("change:label", show);
  blank();
  show();
  return () => {
    model.off("change:result", show);
    model.off("change:preview", show);
    model.off("change:label", show);
  };
}

export default { render };
