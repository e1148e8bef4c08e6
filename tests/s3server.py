"""A real S3-compatible server for tests: moto's standalone server on 127.0.0.1, a free port.

Authentication is on (moto's ``INITIAL_NO_AUTH_ACTION_COUNT``): the first IAM calls create a
user with an S3 policy and its access key; every request after that must be signed with it, so
wrong credentials fail as they would against AWS.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shipyard.testing import wait_until_blocking

__all__ = ["S3Server", "moto_s3"]

#: The unauthenticated calls that set up the user: create user, put policy, create key.
_SETUP_CALLS = 3
_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


@dataclass(frozen=True)
class S3Server:
    """A started moto server, the bucket made in it, and credentials that may use it."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str

    def env(self, **overrides: str) -> dict[str, str]:
        """The standard AWS variables that point a client at this server (with overrides)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            # Never read the developer's own ~/.aws files.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            **overrides,
        }

    def client(self) -> object:
        """A boto3 S3 client with the valid credentials (to set up and inspect the bucket)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )


@contextlib.contextmanager
def moto_s3(workdir: Path, bucket: str = "models") -> Iterator[S3Server]:
    """Start ``python -m moto.server`` on 127.0.0.1:0 with auth on; stop it on exit."""
    import boto3

    log = workdir / "moto.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_CALLS), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        found: list[str] = []

        def started() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"moto server exited: {log.read_text()}")
            found.extend(re.findall(r"Running on (http://127\.0\.0\.1:\d+)", log.read_text()))
            return bool(found)

        wait_until_blocking(started, "the moto server listens", timeout_s=60)
        endpoint = found[0]
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
            region_name="us-east-1",
        )
        iam.create_user(UserName="shipyard")
        iam.put_user_policy(
            UserName="shipyard", PolicyName="s3", PolicyDocument=json.dumps(_POLICY)
        )
        key = iam.create_access_key(UserName="shipyard")["AccessKey"]
        server = S3Server(endpoint, bucket, key["AccessKeyId"], key["SecretAccessKey"])
        server.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
