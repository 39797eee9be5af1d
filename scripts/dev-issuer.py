#!/usr/bin/env python3
"""A development token issuer: an RSA key, its JWKS and RS256 tokens with the claims
the server reads (README, "Authentication"). Uses only Python's standard library and
the openssl command. Never use these keys outside development and tests.

  scripts/dev-issuer.py init [--dir data/dev-issuer]
      creates key.pem and jwks.json, and prints the --trusted-issuer flag to use
  scripts/dev-issuer.py token --actor professional --sub 810000000001 --profession 10
  scripts/dev-issuer.py token --actor system --sub insurer-feed
  scripts/dev-issuer.py token --actor patient --sub user-1 --patient <Patient id>
"""
import argparse
import base64
import json
import subprocess
import sys
import time
from pathlib import Path

ISSUER = "https://dev-issuer.localhost"
AUDIENCE = "dmp-fhir-server"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def init(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / "key.pem"
    if not key.exists():
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        key.chmod(0o600)
    modulus = subprocess.run(["openssl", "rsa", "-in", str(key), "-noout", "-modulus"],
                             check=True, capture_output=True, text=True).stdout.strip().split("=", 1)[1]
    jwk = {"kty": "RSA", "kid": "dev-1", "alg": "RS256", "use": "sig",
           "n": b64url(bytes.fromhex(modulus)), "e": "AQAB"}
    (folder / "jwks.json").write_text(json.dumps({"keys": [jwk]}, indent=2) + "\n")
    print(f"--trusted-issuer {ISSUER},{folder / 'jwks.json'},{AUDIENCE}")


def token(folder: Path, claims: dict, lifetime: int) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now - 5, "exp": now + lifetime}
    payload.update({name: value for name, value in claims.items() if value is not None})
    header = {"alg": "RS256", "typ": "JWT", "kid": "dev-1"}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(folder / "key.pem")],
                               input=signing_input.encode(), check=True, capture_output=True).stdout
    return f"{signing_input}.{b64url(signature)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="data/dev-issuer", type=Path)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("init")
    minted = commands.add_parser("token")
    minted.add_argument("--actor", required=True, choices=["patient", "representative", "professional", "system"])
    minted.add_argument("--sub", required=True)
    minted.add_argument("--patient")
    minted.add_argument("--profession")
    minted.add_argument("--specialty")
    minted.add_argument("--organization")
    minted.add_argument("--scope")
    minted.add_argument("--purpose-of-use", choices=["normal", "bris_de_glace", "centre_15"])
    minted.add_argument("--access-reason")
    minted.add_argument("--lifetime", type=int, default=3600, help="seconds")
    args = parser.parse_args()
    if args.command == "init":
        init(args.dir)
        return 0
    if not (args.dir / "key.pem").exists():
        print(f"no key in {args.dir}: run '{sys.argv[0]} init' first", file=sys.stderr)
        return 2
    print(token(args.dir, {
        "actor": args.actor, "sub": args.sub, "patient": args.patient, "profession": args.profession,
        "specialty": args.specialty, "organization": args.organization, "scope": args.scope,
        "purpose_of_use": args.purpose_of_use, "access_reason": args.access_reason,
    }, args.lifetime))
    return 0


if __name__ == "__main__":
    sys.exit(main())
