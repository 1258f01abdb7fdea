#!/usr/bin/env bash
# Offline checks of the AWS deployment (infra/template.yaml), run by `make lint`:
#   1. cfn-lint on the SAM template,
#   2. the SAM transform (aws-sam-translator, as `sam deploy` would do it) and cfn-lint on its output,
#   3. checkov (CloudFormation framework, no download),
#   4. infra/checks.py: the promises of DESIGN.md section 9 (visibility timeouts, receive counts,
#      dead-letter queues and their alarms, partial batch failures, runtime and architecture, IAM).
# The tools live in a virtual environment, target/py-lint, installed once from PyPI with pinned
# versions and reused after; nothing here needs the network after that, nor AWS credentials.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/py-lint
PINS=(cfn-lint==1.58.0 checkov==3.3.30 aws-sam-translator==1.115.0)
TEMPLATE=infra/template.yaml

if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.pins" 2>/dev/null)" != "${PINS[*]}" ]]; then
    echo "lint-infra: installing ${PINS[*]} into $VENV (once)"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
    echo "${PINS[*]}" > "$VENV/.pins"
fi

# No AWS account is involved: no credentials, no instance metadata, a fixed region for the
# transform's ARNs; checkov downloads nothing (--skip-download, BC_SKIP_MAPPING).
while IFS= read -r var; do unset "$var"; done < <(env | sed -n 's/^\(AWS_[A-Z_]*\)=.*/\1/p')
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export BC_SKIP_MAPPING=TRUE

echo "lint-infra: cfn-lint $TEMPLATE"
"$VENV/bin/cfn-lint" "$TEMPLATE"

echo "lint-infra: SAM transform, then cfn-lint on its output"
transformed="target/py-lint/template.transformed.json"
"$VENV/bin/python" - "$TEMPLATE" "$transformed" <<'PY'
import json, sys
from cfnlint.decode import decode
from samtranslator.public.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform

source, dest = sys.argv[1], sys.argv[2]
template, problems = decode(source)
if problems:
    for p in problems:
        print(p)
    sys.exit(1)
template = json.loads(json.dumps(template, default=str))
# `sam deploy` uploads each CodeUri folder and puts its S3 location in the template; do the same
# with a placeholder so the transform accepts the local paths.
for resource in template["Resources"].values():
    if resource.get("Type") == "AWS::Serverless::Function":
        code = resource["Properties"]["CodeUri"]
        resource["Properties"]["CodeUri"] = "s3://placeholder/" + code.strip("./").replace("/", "-") + ".zip"

class NoManagedPolicies:  # the template names no managed policies, so none has to be looked up
    def load(self):
        return {}

try:
    out = transform(template, {}, NoManagedPolicies())
except InvalidDocumentException as e:
    for cause in e.causes:
        print("SAM transform:", cause.message)
    sys.exit(1)
with open(dest, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1)
print(f"  {len(out['Resources'])} CloudFormation resources")
PY
"$VENV/bin/cfn-lint" "$transformed"

echo "lint-infra: checkov"
"$VENV/bin/checkov" -f "$TEMPLATE" --framework cloudformation --quiet --compact --skip-download

echo "lint-infra: infra/checks.py"
"$VENV/bin/python" infra/checks.py "$TEMPLATE"
