"""What zooforge knows of the Caffe forks, for refusals that name the layer, its type and the fork.

Real prototxts come from many forks of BVLC Caffe, each adding layer types and parameter fields.
zooforge's ``caffe.proto`` holds BVLC's schema plus the fork fields it converts (OpenCV's union of
the forks and a few more). A field or layer type outside it is refused before any weights are read,
in one sentence: which file and line, which layer (name and type), and where the field comes from.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Any


# LayerParameter fields of well-known forks that zooforge's schema does not hold: field -> fork.
FORK_FIELDS: dict[str, str] = {
    "annotated_data_param": "SSD (weiliu89/caffe)",
    "multibox_loss_param": "SSD (weiliu89/caffe)",
    "detection_evaluate_param": "SSD (weiliu89/caffe)",
    "video_data_param": "SSD (weiliu89/caffe)",
    "roi_pooling_param": "Fast R-CNN (rbgirshick/caffe-fast-rcnn)",
    "proposal_param": "Faster R-CNN's C++ ports",
    "psroi_pooling_param": "R-FCN (daijifeng001/caffe-rfcn)",
    "smooth_l1_loss_param": "Fast R-CNN (rbgirshick/caffe-fast-rcnn)",
    "interp_param": "PSPNet / DeepLab (hszhao/PSPNet, deeplab-public)",
    "bn_param": "PSPNet / SegNet (hszhao/PSPNet, alexgkendall/caffe-segnet)",
    "reorg_param": "the YOLOv2 ports",
    "region_param": "the YOLOv2 ports",
    "yolo_param": "the YOLOv3 ports",
    "mish_param": "the YOLOv4 ports",
    "relu6_param": "the MobileNet v2 ports",
    "batch_reduction_param": "Intel's / the synopsys Caffe",
    "lstm_param": "the LSTM forks (junhyukoh/caffe-lstm)",
    "center_loss_param": "the face-recognition forks (ydwen/caffe-face)",
    "margin_inner_product_param": "the face-recognition forks (wy1iu/sphereface)",
}

# Layer types of well-known forks that zooforge does not convert: type -> fork.
FORK_LAYER_TYPES: dict[str, str] = {
    "ROIPooling": "Fast R-CNN (rbgirshick/caffe-fast-rcnn)",
    "PSROIPooling": "R-FCN (daijifeng001/caffe-rfcn)",
    "Proposal": "Faster R-CNN's C++ ports",
    "Python": "pycaffe (a Python layer's code is not part of the model)",
    "Interp": "PSPNet / DeepLab (hszhao/PSPNet, deeplab-public)",
    "BN": "PSPNet / SegNet (hszhao/PSPNet, alexgkendall/caffe-segnet)",
    "Reorg": "the YOLOv2 ports",
    "Region": "the YOLOv2 ports",
    "Yolo": "the YOLOv3 ports",
    "Mish": "the YOLOv4 ports",
    "ReLU6": "the MobileNet v2 ports",
    "DepthwiseConvolution": "the depthwise forks (yonghenglh6/DepthwiseConvolution)",
    "MultiBoxLoss": "SSD (weiliu89/caffe)",
    "AnnotatedData": "SSD (weiliu89/caffe)",
    "DetectionEvaluate": "SSD (weiliu89/caffe)",
}

_NO_FIELD = re.compile(r'Message type "caffe\.(\w+)" has no field named "([^"]+)"')
_BLOCK_OPEN = re.compile(r"\b(layers?)\s*:?\s*\{")
_NAME = re.compile(r'\bname\s*:\s*"([^"]*)"')
_TYPE = re.compile(r'\btype\s*:\s*"?(\w+)"?')


def unknown_field_sentence(path: str, text: str, line: int, message: str) -> str | None:
    """The refusal for a protobuf "has no field named" error at ``line`` (1-based) inside a layer, or
    ``None`` when ``message`` is another kind of parse error or the field is not in a layer."""
    match = _NO_FIELD.search(message)
    if not match:
        return None
    owner, field = match.groups()
    layer = _enclosing_layer(text, line)
    if layer is None:
        return None  # a net-level field: the parse error's own sentence names it
    name, kind = layer
    where = f"{path} line {line}: layer '{name}' ({kind})"
    if owner in ("LayerParameter", "V1LayerParameter"):
        fork = FORK_FIELDS.get(field)
        origin = f"a field of {fork}" if fork else "a field that neither BVLC Caffe nor the forks zooforge knows define"
        return f"{where} uses {field}, {origin}; zooforge cannot convert it"
    return f"{where}: {owner} has no field {field} in BVLC Caffe or the forks zooforge knows"


def _enclosing_layer(text: str, line: int) -> tuple[str, str] | None:
    """Name and type of the top-level ``layer { ... }`` block holding ``line``, read from its text."""
    lines = text.splitlines(keepends=True)
    offset = sum(len(chunk) for chunk in lines[: max(line - 1, 0)])
    start = _top_level_block_start(text, offset)
    if start is None:
        return None
    block = _block_text(text, start)
    name, kind = _NAME.search(block), _TYPE.search(block)
    return (name.group(1) if name else "?", kind.group(1) if kind else "?")


def _top_level_block_start(text: str, offset: int) -> int | None:
    """Start of the depth-0 ``layer``/``layers`` block open at ``offset`` (comments and strings skipped)."""
    depth, start, index = 0, None, 0
    for index, char, kind in _scan(text[:offset]):
        if kind != "code":
            continue
        if char == "{":
            if depth == 0:
                head = text[max(0, index - 40) : index + 1]
                start = index if _BLOCK_OPEN.search(head) else None
            depth += 1
        elif char == "}":
            depth = max(depth - 1, 0)
            if depth == 0:
                start = None
    return start if depth > 0 else None


def _block_text(text: str, start: int) -> str:
    """The text of the block opening at ``start``, nested blocks and comments removed (so ``name``
    and ``type`` are the layer's own, not a parameter message's or a comment's)."""
    depth, own = 0, []
    for _, char, kind in _scan(text[start:]):
        if kind == "code" and char == "{":
            depth += 1
            continue
        if kind == "code" and char == "}":
            depth -= 1
            if depth == 0:
                break
            continue
        if depth == 1 and kind != "comment":
            own.append(char)
    return "".join(own)


def _scan(text: str) -> Iterable[tuple[int, str, str]]:
    """Each character with what it is part of: ``"code"``, a quoted ``"string"`` (quotes included)
    or a ``#`` ``"comment"``."""
    quote, comment = "", False
    for index, char in enumerate(text):
        if comment:
            comment = char != "\n"
            yield index, char, "comment"
        elif quote:
            if char == quote and text[index - 1] != "\\":
                quote = ""
            yield index, char, "string"
        elif char == "#":
            comment = True
            yield index, char, "comment"
        elif char in "\"'":
            quote = char
            yield index, char, "string"
        else:
            yield index, char, "code"


def layer_type_sentence(source: str, name: str, kind: str, supported: Collection[str]) -> str:
    """The refusal of a layer whose type zooforge cannot convert, naming the fork it comes from."""
    fork = FORK_LAYER_TYPES.get(kind)
    origin = f", a layer type of {fork}," if fork else ""
    return (f"{source}: layer '{name}' has type '{kind}'{origin} which zooforge cannot convert; "
            f"supported types: {', '.join(sorted(supported))}")
