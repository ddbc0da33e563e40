"""A drawing pad for lesson 08: draw a digit (or upload a picture) and see a model's answer.

The lesson uses it but does not teach it; what it teaches - preparing the picture like MNIST and
predicting - is vit_lib.digits, which the pad calls after every stroke:

    pad = DigitPad(model)      # shown by Jupyter: draw with a mouse, a finger or a pen
    pad.image                  # the last drawing or uploaded picture, a PIL image (None before)
    pad.prediction             # vit_lib.digits.Prediction for it (None before, or if unusable)

Why anywidget (https://anywidget.dev) and not ipycanvas or a plain HTML/JavaScript cell:

- It runs in JupyterLab 4, Notebook 7, VS Code and Google Colab from one small ES module
  (draw_widget.js beside this file) with no extension to build or enable: its front end ships in
  the anywidget wheel, and on Colab it switches on the custom widget manager itself.
- Strokes are drawn in the browser and only the finished picture goes to the kernel, once per
  stroke. ipycanvas draws from Python, so every mouse movement would make a round trip to the
  kernel (laggy on a remote kernel such as Colab's), and on Colab it needs
  `output.enable_custom_widget_manager()` first.
- It is a normal Jupyter widget (ipywidgets' protocol): traitlets on the Python side, so the
  kernel gets the pixels as data and can answer; a plain HTML/JS cell cannot talk back to the
  kernel in every front end.
- It is small and pure Python (anywidget needs ipywidgets, psygnal and typing-extensions).

The drawing is black ink on a white canvas, the way people draw on paper; prepare_digit turns it
into MNIST's white-on-black 28x28 like any photo of a digit.
"""
from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path
from typing import Any

import anywidget
import traitlets
from PIL import Image
from torch import nn

from vit_lib.digits import Prediction, predict, prepare_digit
from vit_lib.machinery.errors import ImageError

__all__ = ["DigitPad", "image_from_data_url", "png_data_url"]

HERE = Path(__file__).resolve().parent
DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*),(?P<data>.*)$", re.S)
WAITING = "draw one digit, big, in the box (or upload a picture)"


def image_from_data_url(url: str, name: str = "the picture") -> Image.Image:
    """A data: URL (what the browser sends: base64 PNG, JPEG, ...) -> PIL image; ImageError if
    it holds no readable image."""
    match = DATA_URL.match(url or "")
    if match is None or ";base64" not in match.group("params"):
        raise ImageError(f"{name} did not arrive as a base64 data: URL")
    try:
        data = base64.b64decode(match.group("data"), validate=False)
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.copy()
    except (binascii.Error, OSError, ValueError, SyntaxError, EOFError):
        raise ImageError(f"{name} is not an image that Pillow can read; save it as PNG or JPEG "
                         "and upload it again") from None


def png_data_url(image: Image.Image) -> str:
    """PIL image -> data:image/png;base64,... (for an <img> in the browser)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class DigitPad(anywidget.AnyWidget):
    """A square drawing pad bound to an MNIST model: after each stroke (or an upload) the kernel
    prepares the picture (vit_lib.digits.prepare_digit), predicts, and shows the answer and the
    28x28 image the model saw next to the pad.

    model: any model `predict` accepts (a shipped one knows its normalisation and classes), or
    None to only prepare. predict_kw: passed to predict (classes, normalize, k).
    size: the pad's side in pixels; pen: the stroke width in pixels (about a tenth of the pad,
    like MNIST's strokes: thin lines give thin, faint digits).
    """

    _esm = HERE / "draw_widget.js"
    _css = HERE / "draw_widget.css"

    drawing = traitlets.Unicode("").tag(sync=True)      # browser -> kernel: PNG data: URL, "" = cleared
    upload = traitlets.Unicode("").tag(sync=True)       # browser -> kernel: an uploaded file's data: URL
    upload_name = traitlets.Unicode("").tag(sync=True)
    result = traitlets.Unicode(WAITING).tag(sync=True)  # kernel -> browser: the text under the preview
    label = traitlets.Unicode("").tag(sync=True)        # kernel -> browser: the predicted class, or ""
    preview = traitlets.Unicode("").tag(sync=True)      # kernel -> browser: the prepared digit, PNG data: URL
    size = traitlets.Int(280).tag(sync=True)
    pen = traitlets.Int(24).tag(sync=True)

    def __init__(self, model: nn.Module | None = None, *, size: int = 280, pen: int = 24,
                 **predict_kw: Any) -> None:
        super().__init__(size=size, pen=pen)
        self.model = model
        self.predict_kw = predict_kw
        self.image: Image.Image | None = None
        self.source = ""                                 # "drawing", or the uploaded file's name
        self.prediction: Prediction | None = None
        self.error: ImageError | None = None

    @traitlets.observe("drawing")
    def _on_drawing(self, change: dict[str, Any]) -> None:
        if not change["new"]:                            # the Clear button
            self.image, self.source, self.prediction, self.error = None, "", None, None
            self.result, self.label, self.preview = WAITING, "", ""
            return
        self._answer(change["new"], "drawing")

    @traitlets.observe("upload")
    def _on_upload(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._answer(change["new"], self.upload_name or "the uploaded picture")

    def _answer(self, url: str, source: str) -> None:
        self.prediction, self.error, self.label = None, None, ""
        name = "your drawing" if source == "drawing" else source
        try:
            self.image, self.source = image_from_data_url(url, name), source
            self.image.filename = name                   # what prepare_digit's messages call it
            self.show(self.image)
        except ImageError as exc:
            self.error, self.preview = exc, ""
            self.result = str(exc)
        except Exception as exc:      # the model failed: say so under the pad, not in a log
            self.error, self.preview = None, ""
            self.result = f"error: {type(exc).__name__}: {exc}"

    def show(self, image: Any) -> Prediction | None:
        """Prepare and predict `image` (anything prepare_digit reads) as if it had been drawn:
        the pad shows the answer; returns the Prediction (None without a model)."""
        digit = prepare_digit(image)                                   # [1, 28, 28] in [0, 1]
        pixels = (digit[0] * 255).round().byte().numpy()
        self.preview = png_data_url(Image.fromarray(pixels).resize((112, 112), Image.NEAREST))
        if self.model is None:
            self.result = "prepared (no model given)"
            return None
        self.prediction = predict(self.model, digit, prepared=True, **self.predict_kw)
        self.label = self.prediction.label
        self.result = f"prediction: {self.prediction.label}\n{self.prediction}"
        return self.prediction

    def __repr__(self) -> str:     # the text shown where no widget can run (a saved notebook)
        return "DigitPad: a drawing pad; run the notebook in Jupyter to draw"
