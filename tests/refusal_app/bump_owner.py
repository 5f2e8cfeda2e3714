"""pr-5's destroy-time step: write staging's state once more (serial + 1), as a deploy of
staging running at the same moment would."""

import json
import os
from pathlib import Path

import boto3
from botocore.config import Config

from backend.s3.credentials import ensure_admin

KEY = "env:/staging/forkstage/terraform.tfstate"
cred = ensure_admin(Path(os.environ["FORKSTAGE_HOME"]) / "state")
s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["FORKSTAGE_BACKEND_ENDPOINT"],
    region_name="us-east-1",
    aws_access_key_id=cred.access_key_id,
    aws_secret_access_key=cred.secret_access_key,
    config=Config(s3={"addressing_style": "path"}),
)
state = json.loads(s3.get_object(Bucket="forkstage-state", Key=KEY)["Body"].read())
state["serial"] += 1
s3.put_object(Bucket="forkstage-state", Key=KEY, Body=json.dumps(state).encode())
