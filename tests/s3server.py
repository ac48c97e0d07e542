"""A real S3-compatible server on loopback for the object store's tests: moto's server mode (`moto[server]` from
PyPI) started as a child process on a free port, one per test session, a fresh bucket per test."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/moto-api/", timeout=1.0)
            break
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto's S3 server did not start")
            time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


S3_CREDENTIALS = {"s3_access_key_id": "test", "s3_secret_access_key": "test", "s3_region": "us-east-1"}


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A fresh bucket on the loopback server: (endpoint, bucket)."""
    import boto3

    bucket = f"t-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")
    client.create_bucket(Bucket=bucket)
    client.close()
    return s3_endpoint, bucket
