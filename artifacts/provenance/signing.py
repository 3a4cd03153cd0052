"""Sign a release folder offline with an elliptic-curve key, and check such a signature.

The signature is ``<release>/release.sig``: a Sigstore bundle (JSON) written by the ``model-signing``
package (``pip install zooforge[sign]``) with a private EC key (P-256, P-384 or P-521, PEM). It
covers every file of the release, one SHA-256 per file (model-signing's per-file mode; its shard
mode did not verify in our tests), except ``release.sig`` itself. Nothing goes over the network:
no Sigstore, no transparency log. ECDSA signatures are randomised, so two signatures of the same
release differ in bytes; the signed payload (the sorted file list with digests) does not.
"""

from __future__ import annotations

import ast
import base64
import binascii
import json
import os
import re
import tempfile
from pathlib import Path

from zooforge.converters.errors import InputFileError, ZooforgeError
from zooforge.converters.fileio import sha256_file

SIGNATURE_NAME = "release.sig"
SUPPORTED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


class SigningError(ZooforgeError):
    """Signing cannot be done here (model-signing is not installed)."""


def _model_signing():  # noqa: ANN202 - the module
    try:
        import model_signing  # noqa: PLC0415 - optional extra, imported only when signing is used
    except ImportError as exc:
        raise SigningError(
            f"signing needs the model-signing package ({exc.name or exc}): install zooforge[sign]"
        ) from None
    return model_signing


def _cryptography():  # noqa: ANN202 - (serialization, ec)
    try:
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    except ImportError:
        raise SigningError("keys and signatures need the cryptography package: install zooforge[sign]") from None
    return serialization, ec


def _hashing_config(ms):  # noqa: ANN001, ANN202
    """Per-file SHA-256 of every file but the signature (git files included: nothing is exempt)."""
    return (ms.hashing.Config()
            .use_file_serialization(hashing_algorithm="sha256")
            .set_ignored_paths(paths=[SIGNATURE_NAME], ignore_git_paths=False))


def _release_dir(release: Path) -> Path:
    release = Path(release)
    if not release.exists():
        raise InputFileError(f"release folder {release} does not exist")
    if not release.is_dir():
        raise InputFileError(f"{release} is not a folder (give the release folder)")
    return release


def _key_bytes(path: Path, what: str) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise InputFileError(f"{what} {path} is a folder, not a PEM file") from None
    except OSError as exc:
        raise InputFileError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


def _check_curve(key, path: Path, what: str) -> None:  # noqa: ANN001
    _, ec = _cryptography()

    public = key.public_key() if hasattr(key, "public_key") else key
    if not isinstance(public, ec.EllipticCurvePublicKey):
        kind = re.sub(r"^_+|(Public|Private)?Key$", "", type(public).__name__) or "non-EC"
        raise InputFileError(f"{what} {path} is not an elliptic-curve key ({kind}); signing needs "
                             f"{', '.join(SUPPORTED_CURVES.values())}")
    if public.curve.name not in SUPPORTED_CURVES:
        raise InputFileError(f"{what} {path} uses curve {public.curve.name}; model-signing supports "
                             f"{', '.join(SUPPORTED_CURVES.values())}")


def load_private_key(path: Path, password: str | None = None):  # noqa: ANN201 - an EC private key
    """The PEM private key at ``path``, or an InputFileError naming what is wrong with it."""
    serialization, _ = _cryptography()

    data = _key_bytes(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password.encode() if password else None)
    except TypeError:
        message = ("is encrypted and no password was given" if password is None
                   else "is not encrypted; give no password")
        raise InputFileError(f"private key {path} {message}") from None
    except ValueError:
        raise InputFileError(f"private key {path} is not a PEM private key (or the password is wrong)") from None
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm for exotic keys
        raise InputFileError(f"private key {path} cannot be loaded: {exc}") from None
    _check_curve(key, path, "private key")
    return key


def load_public_key(path: Path):  # noqa: ANN201 - an EC public key
    """The PEM public key at ``path``, or an InputFileError naming what is wrong with it."""
    serialization, _ = _cryptography()

    data = _key_bytes(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        hint = " (that is a private key; give its public half)" if b"PRIVATE KEY" in data else ""
        raise InputFileError(f"public key {path} is not a PEM public key{hint}") from None
    except Exception as exc:
        raise InputFileError(f"public key {path} cannot be loaded: {exc}") from None
    _check_curve(key, path, "public key")
    return key


def sign_release(release: Path, private_key: Path, password: str | None = None) -> Path:
    """Write ``<release>/release.sig`` (replacing an older one) and return its path."""
    release = _release_dir(release)
    load_private_key(private_key, password)  # one-sentence errors before model-signing sees the key
    ms = _model_signing()
    target = release / SIGNATURE_NAME
    handle, temporary = tempfile.mkstemp(prefix=f".{release.name}.sig-", dir=release.parent)
    os.close(handle)
    try:
        (ms.signing.Config()
         .use_elliptic_key_signer(private_key=Path(private_key), password=password)
         .set_hashing_config(_hashing_config(ms))
         .sign(release, temporary))
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except ValueError as exc:  # model-signing refuses symlinks and special files while hashing
        Path(temporary).unlink(missing_ok=True)
        raise InputFileError(f"cannot sign {release}: {_first_line(str(exc))}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


_EXTRA = re.compile(r"^Extra files found in model '.*?': (?P<names>.*)$", re.S)
_MISSING = re.compile(r"^Missing files in model '.*?': (?P<names>.*)$", re.S)
_CHANGED = re.compile(r"^Hash mismatch for '(?P<name>.*?)': Expected ", re.S)


def verify_signature(release: Path, public_key: Path) -> list[str]:
    """Problems with ``<release>/release.sig`` against ``public_key``; an empty list means verified.

    Each problem about content names a file: ``changed: X``, ``added: Y``, ``removed: Z`` or
    ``renamed? X -> Y`` (a removed and an added file with the same digest).
    """
    release = _release_dir(release)
    load_public_key(public_key)
    signature = release / SIGNATURE_NAME
    if not signature.is_file():
        return [f"{SIGNATURE_NAME} is missing"]
    ms = _model_signing()
    verifier = (ms.verifying.Config()
                .use_elliptic_key_verifier(public_key=Path(public_key))
                .set_hashing_config(_hashing_config(ms)))
    try:
        verifier.verify(release, signature)
    except ValueError as exc:
        message = str(exc)
        if message.startswith("Signature mismatch:"):
            return _content_problems(release, signature, message.removeprefix("Signature mismatch:").strip())
        if message.startswith("Key mismatch"):
            return [f"{SIGNATURE_NAME} was made with another key than {Path(public_key).name}"]
        if message.startswith("Cannot use"):  # a symlink or special file in the release
            return [f"{SIGNATURE_NAME} cannot be checked: {_first_line(message)}"]
        return [f"{SIGNATURE_NAME} is not a usable signature: {_first_line(message)}"]
    except Exception as exc:  # noqa: BLE001 - InvalidSignature, malformed bundles (JSON, base64, protobuf)
        if type(exc).__name__ == "InvalidSignature":
            return [f"{SIGNATURE_NAME} does not verify with {Path(public_key).name} "
                    "(the signature or its payload was altered)"]
        return [f"{SIGNATURE_NAME} is not a usable signature: {type(exc).__name__}: {_first_line(str(exc))}"]
    return _scope_problems(signature)


def _scope_problems(signature: Path) -> list[str]:
    """A verified signature must cover the whole release: per-file SHA-256, only itself exempt
    (model-signing honours whatever ``ignore_paths`` the signed payload lists)."""
    try:
        bundle = json.loads(signature.read_text())
        serialization = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))["predicate"]["serialization"]
    except (OSError, ValueError, KeyError, TypeError, binascii.Error):
        return [f"{SIGNATURE_NAME}: its payload cannot be read back"]
    problems = []
    exempt = sorted(set(serialization.get("ignore_paths", [])) - {SIGNATURE_NAME})
    if exempt:
        problems.append(f"{SIGNATURE_NAME} leaves files unsigned: {', '.join(exempt)}")
    if serialization.get("method") != "files" or serialization.get("hash_type") != "sha256":
        problems.append(f"{SIGNATURE_NAME} is not a per-file SHA-256 signature "
                        f"({serialization.get('method')}, {serialization.get('hash_type')})")
    return problems


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]


def _content_problems(release: Path, signature: Path, diff: str) -> list[str]:
    """model-signing 1.1 reports a mismatch as ``Signature mismatch: [<repr of a list of str>]``."""
    try:
        entries = ast.literal_eval(diff)
        if not isinstance(entries, list):
            raise ValueError
    except (ValueError, SyntaxError):
        return [f"{SIGNATURE_NAME}: the release does not match its signature: {diff}"]
    added, removed, changed, other = [], [], [], []
    for entry in entries:
        entry = str(entry)
        if match := _EXTRA.match(entry):
            added += match["names"].split(", ")
        elif match := _MISSING.match(entry):
            removed += match["names"].split(", ")
        elif match := _CHANGED.match(entry):
            changed.append(match["name"])
        else:
            other.append(f"{SIGNATURE_NAME}: {entry}")
    signed = _signed_digests(signature)
    renamed = []
    for old in list(removed):
        digest = signed.get(old)
        for new in added:
            if digest is not None and (release / new).is_file() and sha256_file(release / new) == digest:
                renamed.append(f"renamed? {old} -> {new}")
                removed.remove(old)
                added.remove(new)
                break
    return ([f"changed: {name}" for name in changed] + [f"added: {name}" for name in added]
            + [f"removed: {name}" for name in removed] + renamed + other)


def _signed_digests(signature: Path) -> dict[str, str]:
    """The per-file digests in the signed payload (already checked by model-signing), best effort."""
    try:
        bundle = json.loads(signature.read_text())
        payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        return {r["name"]: r["digest"] for r in payload["predicate"]["resources"] if r.get("algorithm") == "sha256"}
    except (OSError, ValueError, KeyError, TypeError, binascii.Error):
        return {}


def make_test_keypair(directory: Path, name: str = "zooforge") -> tuple[Path, Path]:
    """A fresh unencrypted EC P-256 key pair as PEM files ``<name>.key`` and ``<name>.pub`` in
    ``directory`` (for tests and examples; keep real signing keys elsewhere)."""
    serialization, ec = _cryptography()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = directory / f"{name}.key", directory / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public
