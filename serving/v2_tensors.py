"""KServe v2 inference request/response bodies <-> named numpy tensors.

Two encodings, both as `tritonclient.http` sends and reads them:
  * JSON: each input carries `data`, a (nested or flat) list in row-major order;
    BYTES elements are strings.
  * binary tensor extension (Triton's default for tritonclient): the body is a JSON header
    of `Inference-Header-Content-Length` bytes followed by the raw tensors, in input order,
    each input naming its size in `parameters.binary_data_size`. Numbers are little-endian;
    a BYTES tensor is a run of (uint32 little-endian length, bytes) elements.
A response returns an output in binary when the request asks for it (`outputs[i].parameters
.binary_data`, or `parameters.binary_data_output` for all outputs), else as JSON data.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from dataclasses import dataclass, field

import numpy as np

from vistas.unicode import find_lone_surrogate, json_may_hold_surrogate
from vistas.v2_protocol import NUMPY_DTYPES, V2_DATATYPES

HEADER_LENGTH = "Inference-Header-Content-Length"
MAX_RANK = 32  # numpy 1's limit (numpy 2 allows 64); every vistas tower input has 2 to 4 dimensions


class V2Error(ValueError):
    """A request the v2 protocol cannot accept; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Tensor:
    name: str
    datatype: str  # v2 datatype: "FP32", "INT64", "BYTES", ...
    array: np.ndarray  # BYTES: an np.object_ array of `bytes`
    from_json: bool  # BYTES from JSON were strings (images then arrive base64-encoded)


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, Tensor]
    outputs: dict[str, bool] | None = None  # requested output -> binary; None: all outputs
    binary_output: bool = False  # default for outputs not asked for by name
    parameters: dict = field(default_factory=dict)


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """Raw body (+ the Inference-Header-Content-Length header, if any) -> InferRequest, or V2Error."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise V2Error(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 < n <= len(body):
            raise V2Error(f"{HEADER_LENGTH} is {n} but the body has {len(body)} bytes")
        header, binary = body[:n], memoryview(body)[n:]
    else:
        header, binary = body, memoryview(b"")
    try:
        doc = json.loads(header)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise V2Error(f"the inference request header is not valid JSON ({e})") from None
    except RecursionError:
        raise V2Error("the inference request header nests too deeply") from None
    except ValueError:  # Python's int parsing limit (sys.get_int_max_str_digits), not JSON syntax
        raise V2Error(f"a number in the inference request header has over {sys.get_int_max_str_digits()} digits") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise V2Error('an inference request is a JSON object with a non-empty "inputs" list')
    if json_may_hold_surrogate(header) and (message := find_lone_surrogate(doc)) is not None:
        raise V2Error(message)  # in a name, an id, BYTES data (texts): see vistas.unicode
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise V2Error('"parameters" must be an object')

    inputs: dict[str, Tensor] = {}
    offset = 0
    for i, spec in enumerate(doc["inputs"]):
        tensor, used = _parse_input(spec, i, binary[offset:])
        if tensor.name in inputs:
            raise V2Error(f"input {tensor.name!r} is given twice")
        inputs[tensor.name] = tensor
        offset += used
    if offset != len(binary):
        raise V2Error(f"the body has {len(binary) - offset} bytes after the last input's binary data")

    outputs = None
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise V2Error('"outputs" must be a list of {"name", "parameters"?} objects')
        outputs = {}
        for o in doc["outputs"]:
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise V2Error('every entry of "outputs" needs a "name"')
            o_params = o.get("parameters") or {}
            if not isinstance(o_params, dict):
                raise V2Error(f'outputs entry {o["name"]!r}: "parameters" must be an object')
            outputs[o["name"]] = bool(o_params.get("binary_data", params.get("binary_data_output", False)))
    request_id = doc.get("id")
    return InferRequest(
        id=str(request_id) if request_id is not None else None,
        inputs=inputs,
        outputs=outputs,
        binary_output=bool(params.get("binary_data_output", False)),
        parameters=params,
    )


def _parse_input(spec, i: int, binary: memoryview) -> tuple[Tensor, int]:
    """One entry of "inputs" -> (Tensor, binary bytes it used)."""
    if not isinstance(spec, dict):
        raise V2Error(f"inputs[{i}] must be an object with name, shape, datatype and data")
    name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
    where = f"input {name!r}" if isinstance(name, str) else f"inputs[{i}]"
    if not isinstance(name, str):
        raise V2Error(f"inputs[{i}] has no name")
    if not isinstance(datatype, str) or datatype not in NUMPY_DTYPES:
        raise V2Error(f"{where} has datatype {datatype!r}; supported: {sorted(NUMPY_DTYPES)}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise V2Error(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    if len(shape) > MAX_RANK:
        raise V2Error(f"{where}: shape has {len(shape)} dimensions; a tensor has at most {MAX_RANK}")
    count = math.prod(shape)
    params = spec.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or size > len(binary):
            raise V2Error(f"{where}: binary_data_size {size!r} does not fit the {len(binary)} bytes after the header")
        array = _from_binary(bytes(binary[:size]), datatype, shape, count, where)
        return Tensor(name, datatype, array, from_json=False), size
    if "data" not in spec:
        raise V2Error(f"{where} has neither `data` nor parameters.binary_data_size")
    return Tensor(name, datatype, _from_json(spec["data"], datatype, shape, count, where), from_json=True), 0


def _from_binary(raw: bytes, datatype: str, shape: list[int], count: int, where: str) -> np.ndarray:
    if datatype == "BYTES":
        items, pos = [], 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise V2Error(f"{where}: BYTES data ends inside an element's 4-byte length")
            (n,) = struct.unpack_from("<I", raw, pos)
            if pos + 4 + n > len(raw):
                raise V2Error(f"{where}: a BYTES element of {n} bytes runs past the end of its data")
            items.append(raw[pos + 4 : pos + 4 + n])
            pos += 4 + n
        return _shaped_bytes(items, shape, count, where)
    dtype = np.dtype(NUMPY_DTYPES[datatype]).newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise V2Error(f"{where}: shape {shape} of {datatype} needs {count * dtype.itemsize} bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=False).reshape(shape)


def _from_json(data, datatype: str, shape: list[int], count: int, where: str) -> np.ndarray:
    try:
        flat = _flatten(data)
    except RecursionError:
        raise V2Error(f"{where}: data nests too deeply; send it flat, in row-major order") from None
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise V2Error(f"{where}: BYTES data in JSON must be strings")
        return _shaped_bytes([v.encode("utf-8") for v in flat], shape, count, where)
    if len(flat) != count:
        raise V2Error(f"{where}: shape {shape} holds {count} elements, but data has {len(flat)}")
    if not all(isinstance(v, (int, float)) for v in flat):  # bool is an int: fine for BOOL
        raise V2Error(f"{where}: {datatype} data must be numbers")
    try:
        return np.asarray(flat, dtype=NUMPY_DTYPES[datatype]).reshape(shape)
    except (OverflowError, ValueError) as e:
        raise V2Error(f"{where}: data does not fit {datatype} ({e})") from None


def _flatten(data) -> list:
    if not isinstance(data, list):
        return [data]
    out = []
    for v in data:
        out.extend(_flatten(v) if isinstance(v, list) else [v])
    return out


def _shaped_bytes(items: list[bytes], shape: list[int], count: int, where: str) -> np.ndarray:
    if len(items) != count:
        raise V2Error(f"{where}: shape {shape} holds {count} elements, but data has {len(items)}")
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape)


def encode_infer_response(
    model: str, request: InferRequest, outputs: dict[str, np.ndarray]
) -> tuple[bytes, dict[str, str]]:
    """Named numeric outputs -> (body, headers); binary where the request asked for it."""
    wanted = request.outputs if request.outputs is not None else {n: request.binary_output for n in outputs}
    unknown = sorted(set(wanted) - set(outputs))
    if unknown:
        raise V2Error(f"model {model!r} has no output {unknown} for this request; it returns {sorted(outputs)}")
    entries, blobs = [], []
    for name, binary in wanted.items():
        array = np.ascontiguousarray(outputs[name])
        entry = {"name": name, "datatype": V2_DATATYPES[array.dtype.name], "shape": list(array.shape)}
        if binary:
            raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = array.ravel().tolist()
        entries.append(entry)
    doc = {"model_name": model, "model_version": "1", "outputs": entries}
    if request.id is not None:
        doc["id"] = request.id
    header = json.dumps(doc, separators=(",", ":")).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
