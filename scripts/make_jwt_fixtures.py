#!/usr/bin/env python3
"""Writes tests/fixtures/jwt/: tokens minted by a foreign library (PyJWT + cryptography) that
inferd's verifier must accept or refuse with a stated reason (see src/auth/jwt.rs tests).

Outputs (all test-only; the private keys protect nothing):
  signing-key.pem      Ed25519 private key, PKCS#8 PEM (fixed seed, so reruns give the same key)
  trusted/<kid>.pem    its public key, SPKI PEM; kid = RFC 7638 JWK thumbprint
  policy.json          issuer, audience, leeway_s, max_token_bytes the verifier must use
  revocations.toml     revoked jti / sub
  tokens.json          [{"name", "token", "now" (unix seconds to inject), "expect": "ok"|reason}]

Setup (pinned in scripts/requirements-jwt.txt):
  python3 -m venv ~/.cache/inferd-jwt-venv
  ~/.cache/inferd-jwt-venv/bin/pip install -r scripts/requirements-jwt.txt
  ~/.cache/inferd-jwt-venv/bin/python scripts/make_jwt_fixtures.py
"""

import base64
import hashlib
import hmac
import json
import pathlib

import jwt  # PyJWT
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "jwt"

NOW = 1_750_000_000  # fixed "now" injected by the Rust test
LEEWAY = 60
ISSUER = "https://issuer.example"
AUDIENCE = "inferd-fleet"
REVOKED_JTI = "jti-revoked-1"
REVOKED_SUB = "device-stolen"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(public_raw: bytes) -> str:
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": b64url(public_raw)},
        separators=(",", ":"),
        sort_keys=True,
    )
    return b64url(hashlib.sha256(canonical.encode()).digest())


def claims(**overrides):
    base = {
        "iss": ISSUER,
        "sub": "device-42",
        "aud": AUDIENCE,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 3600,
        "jti": "jti-ok-1",
        "scope": "predict metrics",
    }
    for key, value in overrides.items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def hand_made(header: dict, payload: dict, sign) -> str:
    """A compact JWS built without PyJWT (for what PyJWT refuses to make)."""
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(payload, separators=(",", ":")).encode())
    )
    return signing_input + "." + b64url(sign(signing_input.encode()))


def main() -> None:
    (OUT / "trusted").mkdir(parents=True, exist_ok=True)
    for old in (OUT / "trusted").glob("*.pem"):
        old.unlink()

    seed = hashlib.sha256(b"inferd test-only fixture key; never trust it").digest()
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    public_raw = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = thumbprint(public_raw)
    (OUT / "signing-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (OUT / "trusted" / f"{kid}.pem").write_bytes(public_pem)

    other = ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"inferd fixture: an untrusted key").digest()
    )
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())

    def eddsa(payload, headers=None, signer=key):
        hdr = {"kid": kid} if headers is None else headers
        return jwt.encode(payload, signer, algorithm="EdDSA", headers=hdr)

    valid = eddsa(claims())
    head, body, sig = valid.split(".")
    # Flip one signature character in the middle (the last one may only hold padding bits).
    mid = len(sig) // 2
    tampered_sig = head + "." + body + "." + sig[:mid] + ("A" if sig[mid] != "A" else "B") + sig[mid + 1 :]
    forged_body = b64url(json.dumps(claims(sub="admin"), separators=(",", ":")).encode())
    tampered_payload = head + "." + forged_body + "." + sig

    # HS256 keyed with the public key, the classic algorithm-confusion attack. PyJWT refuses
    # a PEM as an HMAC secret, so these are made by hand.
    hs_pem = hand_made(
        {"alg": "HS256", "typ": "JWT", "kid": kid},
        claims(),
        lambda m: hmac.new(public_pem, m, hashlib.sha256).digest(),
    )
    hs_raw = hand_made(
        {"alg": "HS256", "typ": "JWT", "kid": kid},
        claims(),
        lambda m: hmac.new(public_raw, m, hashlib.sha256).digest(),
    )
    alg_none = jwt.encode(claims(), None, algorithm="none", headers={"kid": kid})

    cases = [
        ("valid", valid, NOW, "ok"),
        ("valid_aud_list", eddsa(claims(aud=["other", AUDIENCE])), NOW, "ok"),
        ("valid_within_leeway_after_exp", eddsa(claims(exp=NOW - 30)), NOW, "ok"),
        ("valid_nbf_within_leeway", eddsa(claims(nbf=NOW + 30, iat=NOW)), NOW, "ok"),
        # Valid until 2100: the integration test serves it at the real current time.
        ("valid_until_2100", eddsa(claims(exp=4_102_444_800)), NOW, "ok"),
        ("expired", eddsa(claims(exp=NOW - 3600)), NOW, "expired"),
        ("expired_at_leeway_boundary", eddsa(claims(exp=NOW - LEEWAY)), NOW, "expired"),
        ("not_yet_valid", eddsa(claims(nbf=NOW + 3600, iat=NOW)), NOW, "not_yet_valid"),
        ("issued_in_future", eddsa(claims(iat=NOW + 3600, nbf=None)), NOW, "not_yet_valid"),
        ("wrong_audience", eddsa(claims(aud="someone-else")), NOW, "wrong_audience"),
        ("missing_audience", eddsa(claims(aud=None)), NOW, "wrong_audience"),
        ("wrong_issuer", eddsa(claims(iss="https://evil.example")), NOW, "wrong_issuer"),
        ("no_exp", eddsa(claims(exp=None)), NOW, "missing_exp"),
        ("no_sub", eddsa(claims(sub=None)), NOW, "missing_sub"),
        ("no_kid", eddsa(claims(), headers={}), NOW, "missing_kid"),
        ("unknown_kid", eddsa(claims(), headers={"kid": "not-a-trusted-kid"}), NOW, "unknown_kid"),
        ("untrusted_key_claiming_trusted_kid", eddsa(claims(), signer=other), NOW, "bad_signature"),
        ("alg_none", alg_none, NOW, "wrong_alg"),
        ("hs256_public_key_pem_as_secret", hs_pem, NOW, "wrong_alg"),
        ("hs256_public_key_raw_as_secret", hs_raw, NOW, "wrong_alg"),
        ("rs256", jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": kid}), NOW, "wrong_alg"),
        ("es256", jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": kid}), NOW, "wrong_alg"),
        ("tampered_signature", tampered_sig, NOW, "bad_signature"),
        ("tampered_payload", tampered_payload, NOW, "bad_signature"),
        ("revoked_jti", eddsa(claims(jti=REVOKED_JTI)), NOW, "revoked"),
        ("revoked_sub", eddsa(claims(sub=REVOKED_SUB, jti="jti-ok-2")), NOW, "revoked"),
        ("too_long", eddsa(claims(pad="x" * 9000)), NOW, "too_long"),
        ("not_a_jws", "not.a-token", NOW, "malformed"),
    ]
    tokens = [
        {"name": name, "token": token, "now": now, "expect": expect}
        for name, token, now, expect in cases
    ]
    policy = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "leeway_s": LEEWAY,
        "max_token_bytes": 8192,
        "kid": kid,
        "valid_sub": "device-42",
        "valid_scopes": ["predict", "metrics"],
    }
    (OUT / "tokens.json").write_text(json.dumps(tokens, indent=1) + "\n")
    (OUT / "policy.json").write_text(json.dumps(policy, indent=1) + "\n")
    (OUT / "revocations.toml").write_text(
        "# Test-only revocations for tests/fixtures/jwt/tokens.json\n"
        f'jti = ["{REVOKED_JTI}"]\nsub = ["{REVOKED_SUB}"]\n'
    )
    print(f"wrote {len(tokens)} cases to {OUT} (kid {kid}, PyJWT {jwt.__version__})")


if __name__ == "__main__":
    main()
