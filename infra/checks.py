#!/usr/bin/env python3
"""Offline checks of infra/template.yaml against the promises of DESIGN.md (section 9 and the chain
of section 3): what cfn-lint and checkov cannot know about this product.

Plain Python with PyYAML (cfn-lint brings it). Prints one line per check and `N passed, M failed`;
exits non-zero on any failure. Usage: python3 infra/checks.py [template] (default: beside this file).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# binary name -> (timeout s, memory MB): the six handlers of DESIGN.md section 3.
FUNCTIONS = {
    "sync": (900, 512),
    "expiry-scan": (300, 512),
    "rotate": (120, 256),
    "run-step": (300, 256),
    "grace-cleanup": (300, 256),
    "http-api": (29, 256),
}
# queue -> the function that consumes it (same name) and its SQS batch size.
BATCH_SIZE = {"sync": 1, "expiry-scan": 10, "rotate": 10, "run-step": 10, "grace-cleanup": 10}
QUEUES = list(BATCH_SIZE)
# function -> the queues it may send to (DESIGN.md section 3, "sends", plus its own timer's queue).
SENDS = {
    "sync": {"sync", "expiry-scan"},
    "expiry-scan": {"expiry-scan", "rotate"},
    "rotate": {"run-step"},
    "run-step": {"run-step"},
    "grace-cleanup": {"grace-cleanup"},
    # The rotate trigger, and the dead-letter redrive, which sends a dead letter back to its queue.
    "http-api": set(BATCH_SIZE),
}
# Functions that read dead letters: the HTTP API's on-call routes (and redrive), and the expiry scan,
# which alerts once per new dead letter with the credential it names.
DLQ_HANDLERS = {"http-api", "expiry-scan"}
SCHEDULES = {"sync": "rate(1 hour)", "expiry-scan": "rate(15 minutes)", "grace-cleanup": "rate(1 hour)"}
ROUTES = {
    ("POST", "/v1/credentials/{proxy+}"),
    ("GET", "/v1/credentials/{proxy+}"),
    ("GET", "/v1/executions/{id}"),
    ("POST", "/v1/executions/{id}/confirm"),
    ("GET", "/v1/dashboard"),
    ("GET", "/v1/dead-letters"),
    ("GET", "/v1/dead-letters/{id}"),
    ("POST", "/v1/dead-letters/redrive"),
    ("GET", "/healthz"),
}
UNAUTHENTICATED = {("GET", "/healthz")}
ENVIRONMENT = {
    "ROTATOR_AWS_TABLE",
    "ROTATOR_AWS_KMS_KEY",
    "ROTATOR_AWS_QUEUE_PREFIX",
    "ROTATOR_CONFIG",
    "RUST_LOG",
    "ENTRA_CLIENT_SECRET",
}
TABLE_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
}
CONSUME_ACTIONS = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
}
# Actions for which AWS offers no resource narrower than "*".
STAR_RESOURCE_OK = {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "sts:GetWebIdentityToken"}
# The functions that sign in to Entra (Graph, and the Azure steps' Key Vault and Resource Manager),
# and so may ask STS for a web identity token for Entra's token exchange.
ENTRA_SIGN_IN = {"sync", "rotate", "run-step", "grace-cleanup", "http-api"}
ENTRA_AUDIENCE = "api://AzureADTokenExchange"


# ------------------------------------------------------------------------------------------------
# Loading: CloudFormation's short tags become their long forms.
# ------------------------------------------------------------------------------------------------
class CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.Loader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _tag)


def load(path: Path) -> dict:
    with path.open(encoding="utf-8") as f:
        return yaml.load(f, Loader=CfnLoader)  # noqa: S506 - a SafeLoader subclass


# ------------------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------------------
class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, ok: bool, what: str, why: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"ok   {what}")
        else:
            self.failed += 1
            print(f"FAIL {what}{': ' + why if why else ''}")
        return ok


# ------------------------------------------------------------------------------------------------
# Helpers over the template
# ------------------------------------------------------------------------------------------------
def listify(v):
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def getatt_target(v, attribute: str | None = None) -> str | None:
    """The logical id of `!GetAtt X.attribute` (any attribute when None), else None."""
    if isinstance(v, dict) and "Fn::GetAtt" in v:
        name, attr = v["Fn::GetAtt"]
        if attribute is None or attr == attribute:
            return name
    return None


def ref_target(v) -> str | None:
    return v["Ref"] if isinstance(v, dict) and set(v) == {"Ref"} else None


def sub_text(v) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and "Fn::Sub" in v:
        s = v["Fn::Sub"]
        return s if isinstance(s, str) else s[0]
    return None


def int_value(v, params: dict) -> int | None:
    target = ref_target(v)
    if target is not None:
        v = params.get(target, {}).get("Default")
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def function_props(tpl: dict, logical_id: str) -> dict:
    """A function's properties with the SAM Globals merged in (maps merge, the function wins)."""
    glob = (tpl.get("Globals") or {}).get("Function") or {}
    own = tpl["Resources"][logical_id].get("Properties") or {}
    merged = dict(glob)
    for k, v in own.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            inner = dict(merged[k])
            for ik, iv in v.items():
                if isinstance(iv, dict) and isinstance(inner.get(ik), dict):
                    inner[ik] = {**inner[ik], **iv}
                else:
                    inner[ik] = iv
            merged[k] = inner
        else:
            merged[k] = v
    return merged


def statements(role: dict) -> list[dict]:
    out = []
    for pol in (role.get("Properties") or {}).get("Policies") or []:
        out.extend(listify((pol.get("PolicyDocument") or {}).get("Statement")))
    return out


def queue_name_of(resource: dict) -> str | None:
    text = sub_text((resource.get("Properties") or {}).get("QueueName"))
    if text and text.startswith("${AWS::StackName}-"):
        return text[len("${AWS::StackName}-") :]
    return None


# ------------------------------------------------------------------------------------------------
# The checks
# ------------------------------------------------------------------------------------------------
def run(tpl: dict, r: Report) -> None:
    res = tpl.get("Resources") or {}
    params = tpl.get("Parameters") or {}

    def of_type(t: str) -> dict:
        return {k: v for k, v in res.items() if v.get("Type") == t}

    # --- functions ---------------------------------------------------------------------------
    functions = of_type("AWS::Serverless::Function")
    by_bin: dict[str, str] = {}
    for lid in functions:
        code = str(function_props(tpl, lid).get("CodeUri", ""))
        m = re.fullmatch(r"\.\./target/lambda/([a-z0-9-]+)/?", code)
        if m:
            by_bin[m.group(1)] = lid
    r.check(
        set(by_bin) == set(FUNCTIONS) and len(functions) == len(FUNCTIONS),
        "the six functions exist, one per handler binary (CodeUri ../target/lambda/<bin>/)",
        f"found {sorted(by_bin)} in {len(functions)} functions",
    )

    arch_param = params.get("LambdaArchitecture") or {}
    for bin_name, (timeout, memory) in FUNCTIONS.items():
        lid = by_bin.get(bin_name)
        if lid is None:
            r.check(False, f"{bin_name}: function present")
            continue
        p = function_props(tpl, lid)
        archs = listify(p.get("Architectures"))
        resolved = []
        for a in archs:
            target = ref_target(a)
            resolved.append(params.get(target, {}).get("Default") if target else a)
        arch_ok = resolved == ["arm64"] and all(
            ref_target(a) is None or set(arch_param.get("AllowedValues", [])) == {"arm64", "x86_64"} for a in archs
        )
        r.check(
            p.get("Runtime") == "provided.al2023" and arch_ok and p.get("Handler") == "bootstrap",
            f"{bin_name}: provided.al2023, arm64 (LambdaArchitecture default), handler bootstrap",
            f"runtime {p.get('Runtime')}, architectures {resolved}, handler {p.get('Handler')}",
        )
        r.check(
            p.get("Timeout") == timeout and p.get("MemorySize") == memory,
            f"{bin_name}: timeout {timeout} s, memory {memory} MB",
            f"timeout {p.get('Timeout')}, memory {p.get('MemorySize')}",
        )
        name = sub_text(p.get("FunctionName"))
        r.check(
            name == f"${{AWS::StackName}}-{bin_name}",
            f"{bin_name}: named <stack>-{bin_name}",
            f"FunctionName {name}",
        )
        env = ((p.get("Environment") or {}).get("Variables")) or {}
        # The deprecated stored secret: only when the (NoEcho, empty by default) parameter is given.
        given = env.get("ENTRA_CLIENT_SECRET")
        branches = given.get("Fn::If") if isinstance(given, dict) else None
        secret_param = (
            ref_target(branches[1])
            if isinstance(branches, list) and len(branches) == 3 and ref_target(branches[2]) == "AWS::NoValue"
            else None
        )
        r.check(
            ENVIRONMENT <= set(env)
            and env.get("ROTATOR_CONFIG") == "/var/task/rotator.toml"
            and sub_text(env.get("ROTATOR_AWS_QUEUE_PREFIX")) == "${AWS::StackName}-"
            and secret_param is not None
            and params.get(secret_param, {}).get("NoEcho") is True
            and params.get(secret_param, {}).get("Default") == ""
            and p.get("KmsKeyArn") is not None,
            f"{bin_name}: environment (table, key, queue prefix, config, RUST_LOG, an optional NoEcho client secret, none by default), KMS-encrypted",
            f"variables {sorted(env)}, secret from {secret_param}, KmsKeyArn {p.get('KmsKeyArn')}",
        )
        logging = p.get("LoggingConfig") or {}
        group = ref_target(logging.get("LogGroup"))
        group_props = (res.get(group) or {}).get("Properties") or {}
        r.check(
            logging.get("LogFormat") == "JSON"
            and res.get(group, {}).get("Type") == "AWS::Logs::LogGroup"
            and int_value(group_props.get("RetentionInDays"), params) is not None,
            f"{bin_name}: JSON logs to a declared log group with a retention",
            f"LoggingConfig {logging}",
        )

    # --- queues --------------------------------------------------------------------------------
    queues = of_type("AWS::SQS::Queue")
    named = {queue_name_of(v): k for k, v in queues.items()}
    for q in QUEUES:
        r.check(
            f"{q}.fifo" in named and f"{q}-dlq.fifo" in named,
            f"queue {q}: <stack>-{q}.fifo and its dead-letter queue <stack>-{q}-dlq.fifo exist",
            f"queue names {sorted(n for n in named if n)}",
        )
    r.check(
        len(queues) == 2 * len(QUEUES),
        f"exactly {2 * len(QUEUES)} queues (five and their dead-letter queues)",
        f"found {len(queues)}",
    )
    for lid, qres in queues.items():
        qp = qres.get("Properties") or {}
        r.check(
            qp.get("FifoQueue") is True
            and qp.get("ContentBasedDeduplication") is False
            and (qp.get("SqsManagedSseEnabled") is True or qp.get("KmsMasterKeyId") is not None),
            f"{lid}: FIFO, ContentBasedDeduplication false (the code sends deduplication ids), encrypted",
        )

    # Which function consumes which queue, from the SQS event sources.
    consumers: dict[str, list[tuple[str, dict]]] = {}
    sqs_events = 0
    for bin_name, lid in by_bin.items():
        for ev_name, ev in ((function_props(tpl, lid).get("Events")) or {}).items():
            if ev.get("Type") != "SQS":
                continue
            sqs_events += 1
            props = ev.get("Properties") or {}
            consumers.setdefault(getatt_target(props.get("Queue"), "Arn") or "?", []).append((bin_name, props))
            r.check(
                "ReportBatchItemFailures" in listify(props.get("FunctionResponseTypes")),
                f"{bin_name}: SQS event source {ev_name} reports batch item failures",
            )
    r.check(sqs_events == len(QUEUES), "one SQS event source per queue", f"found {sqs_events}")

    for q in QUEUES:
        qid, dlq_id = named.get(f"{q}.fifo"), named.get(f"{q}-dlq.fifo")
        if qid is None or dlq_id is None:
            continue
        qp = queues[qid].get("Properties") or {}
        dp = queues[dlq_id].get("Properties") or {}
        cons = consumers.get(qid, [])
        ok_consumer = [c for c in cons if c[0] == q]
        r.check(
            len(cons) == 1 and len(ok_consumer) == 1,
            f"queue {q}: consumed by exactly one function, {q}",
            f"consumers {[c[0] for c in cons]}",
        )
        if ok_consumer:
            batch = ok_consumer[0][1].get("BatchSize")
            r.check(batch == BATCH_SIZE[q], f"queue {q}: batch size {BATCH_SIZE[q]}", f"BatchSize {batch}")
            fp = function_props(tpl, by_bin[q])
            timeout = fp.get("Timeout") or 0
            vis = qp.get("VisibilityTimeout") or 30
            r.check(
                vis >= 6 * timeout,
                f"queue {q}: visibility timeout {vis} s >= 6 x function timeout {timeout} s",
            )
            max_conc = (ok_consumer[0][1].get("ScalingConfig") or {}).get("MaximumConcurrency")
            reserved = fp.get("ReservedConcurrentExecutions")
            r.check(
                reserved is None or (max_conc is not None and max_conc < reserved),
                f"queue {q}: its event source cannot be throttled (MaximumConcurrency {max_conc} < reserved {reserved})",
            )
        redrive = qp.get("RedrivePolicy") or {}
        r.check(
            getatt_target(redrive.get("deadLetterTargetArn"), "Arn") == dlq_id,
            f"queue {q}: redrive policy targets {dlq_id}",
            f"deadLetterTargetArn {redrive.get('deadLetterTargetArn')}",
        )
        mrc = redrive.get("maxReceiveCount")
        r.check(isinstance(mrc, int) and mrc >= 5, f"queue {q}: maxReceiveCount {mrc} >= 5")
        q_ret = qp.get("MessageRetentionPeriod", 345600)
        d_ret = dp.get("MessageRetentionPeriod", 345600)
        r.check(
            d_ret > q_ret,
            f"queue {q}: dead letters kept longer than messages ({d_ret} s > {q_ret} s)",
        )
        allow = dp.get("RedriveAllowPolicy") or {}
        sources = [sub_text(s) for s in listify(allow.get("sourceQueueArns"))]
        r.check(
            allow.get("redrivePermission") == "allowAll"
            or (allow.get("redrivePermission") == "byQueue" and any(s and s.endswith(f":${{AWS::StackName}}-{q}.fifo") for s in sources)),
            f"queue {q}: its dead-letter queue allows redrive back to it",
            f"RedriveAllowPolicy {allow}",
        )

    # --- on call -------------------------------------------------------------------------------
    topics = of_type("AWS::SNS::Topic")
    r.check(
        len(topics) == 1 and all((t.get("Properties") or {}).get("KmsMasterKeyId") for t in topics.values()),
        "one on-call topic, KMS-encrypted",
    )
    topic = next(iter(topics), None)
    alarms = of_type("AWS::CloudWatch::Alarm")
    for q in QUEUES:
        dlq_id = named.get(f"{q}-dlq.fifo")
        found = []
        for aid, a in alarms.items():
            ap = a.get("Properties") or {}
            dims = {d.get("Name"): d.get("Value") for d in listify(ap.get("Dimensions"))}
            if getatt_target(dims.get("QueueName"), "QueueName") == dlq_id:
                found.append((aid, ap))
        good = [
            aid
            for aid, ap in found
            if ap.get("Namespace") == "AWS/SQS"
            and ap.get("MetricName") == "ApproximateNumberOfMessagesVisible"
            and ap.get("ComparisonOperator") == "GreaterThanThreshold"
            and ap.get("Threshold") == 0
            and ap.get("EvaluationPeriods") == 1
            and ap.get("Period") in (60, 300)
            and ap.get("TreatMissingData") == "notBreaching"
            and any(ref_target(x) == topic for x in listify(ap.get("AlarmActions")))
        ]
        r.check(
            bool(good),
            f"queue {q}: an alarm on its dead-letter queue (visible > 0) notifies the on-call topic",
            f"alarms on it: {[a for a, _ in found]}",
        )
    subs = of_type("AWS::SNS::Subscription")
    r.check(
        all(s.get("Condition") for s in subs.values()) and bool(subs),
        "the email subscription exists only when OnCallEmail is given",
    )

    # --- schedules -----------------------------------------------------------------------------
    for bin_name, lid in by_bin.items():
        found = [
            (e.get("Properties") or {}).get("Schedule") or (e.get("Properties") or {}).get("ScheduleExpression")
            for e in ((function_props(tpl, lid).get("Events")) or {}).values()
            if e.get("Type") in ("Schedule", "ScheduleV2")
        ]
        want = [SCHEDULES[bin_name]] if bin_name in SCHEDULES else []
        r.check(found == want, f"{bin_name}: timers {want or 'none'}", f"found {found}")

    # --- IAM: least privilege --------------------------------------------------------------------
    queue_arn = {named[f"{q}.fifo"]: q for q in QUEUES if f"{q}.fifo" in named}
    dlq_arn = {named[f"{q}-dlq.fifo"]: q for q in QUEUES if f"{q}-dlq.fifo" in named}
    for bin_name, lid in by_bin.items():
        role_id = getatt_target(function_props(tpl, lid).get("Role"), "Arn")
        role = res.get(role_id) or {}
        if role.get("Type") != "AWS::IAM::Role":
            r.check(False, f"{bin_name}: has its own IAM role", f"Role {role_id}")
            continue
        users = [b for b, l in by_bin.items() if getatt_target(function_props(tpl, l).get("Role"), "Arn") == role_id]
        r.check(users == [bin_name], f"{bin_name}: has its own IAM role ({role_id})", f"shared by {users}")
        sts = statements(role)
        sends, consumes, dlq_reads, table_ok, problems = set(), set(), set(), False, []
        for s in sts:
            if s.get("Effect") != "Allow":
                continue
            actions = set(listify(s.get("Action")))
            resources = listify(s.get("Resource"))
            if any("*" == a or a.endswith(":*") for a in actions):
                problems.append(f"wildcard action in {s.get('Sid')}")
            if "*" in resources and not actions <= STAR_RESOURCE_OK:
                problems.append(f"'*' resource in {s.get('Sid')}")
            targets = {getatt_target(x, "Arn") for x in resources}
            if "sqs:SendMessage" in actions:
                for t in targets:
                    if t in dlq_arn or t not in queue_arn:
                        problems.append(f"sends to {t}")
                    else:
                        sends.add(queue_arn[t])
            if actions & {"sqs:ReceiveMessage", "sqs:DeleteMessage"}:
                for t in targets:
                    if t in queue_arn and actions >= CONSUME_ACTIONS:
                        consumes.add(queue_arn[t])
                    elif t in dlq_arn and bin_name in DLQ_HANDLERS and actions >= CONSUME_ACTIONS:
                        dlq_reads.add(dlq_arn[t])
                    else:
                        problems.append(f"receives from {t}")
            if actions & TABLE_ACTIONS:
                if not actions <= TABLE_ACTIONS:
                    problems.append(f"table statement {s.get('Sid')} has {sorted(actions - TABLE_ACTIONS)}")
                texts = [sub_text(x) or "" for x in resources]
                table_ok = actions == TABLE_ACTIONS and any(t.endswith(":table/${AWS::StackName}-store") for t in texts) and any(
                    t.endswith(":table/${AWS::StackName}-store/index/*") for t in texts
                )
            if any(a.startswith("kms:") for a in actions):
                problems.append("KMS is granted by the key policy, not the role")
        r.check(table_ok, f"{bin_name}: reads and writes the table and its indexes with the item actions only")
        want_consume = {bin_name} if bin_name in BATCH_SIZE else set()
        r.check(consumes == want_consume, f"{bin_name}: consumes {sorted(want_consume) or 'no queue'}", f"consumes {sorted(consumes)}")
        r.check(sends == SENDS[bin_name], f"{bin_name}: sends only to {sorted(SENDS[bin_name])}", f"sends to {sorted(sends)}")
        want_dlq = set(QUEUES) if bin_name in DLQ_HANDLERS else set()
        r.check(dlq_reads == want_dlq, f"{bin_name}: reads dead letters of {sorted(want_dlq) or 'no queue'}", f"reads {sorted(dlq_reads)}")
        r.check(not problems, f"{bin_name}: no wildcard actions, '*' resources only where AWS requires", "; ".join(problems))

    # --- the key --------------------------------------------------------------------------------
    keys = of_type("AWS::KMS::Key")
    key = next(iter(keys.values()), {})
    kp = key.get("Properties") or {}
    policy = listify((kp.get("KeyPolicy") or {}).get("Statement"))

    def key_grants(role_id: str) -> set[str]:
        out: set[str] = set()
        for s in policy:
            principals = listify((s.get("Principal") or {}).get("AWS"))
            if s.get("Effect") == "Allow" and any(getatt_target(p, "Arn") == role_id for p in principals):
                if not s.get("Condition"):
                    out |= set(listify(s.get("Action")))
        return out

    r.check(
        len(keys) == 1
        and kp.get("EnableKeyRotation") is True
        and kp.get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"
        and key.get("DeletionPolicy") == "Retain",
        "one symmetric KMS key, rotation enabled, retained",
    )
    aliases = [sub_text((a.get("Properties") or {}).get("AliasName")) for a in of_type("AWS::KMS::Alias").values()]
    r.check(aliases == ["alias/${AWS::StackName}"], "the key's alias is alias/<stack>", f"aliases {aliases}")
    rotate_role = getatt_target(function_props(tpl, by_bin.get("rotate", "")).get("Role") if "rotate" in by_bin else None, "Arn")
    step_role = getatt_target(function_props(tpl, by_bin.get("run-step", "")).get("Role") if "run-step" in by_bin else None, "Arn")
    r.check(
        {"kms:GenerateDataKey", "kms:Decrypt"} <= key_grants(rotate_role or ""),
        "rotate may seal (GenerateDataKey, Decrypt)",
    )
    r.check(key_grants(step_role or "") == {"kms:Decrypt"}, "run-step may unseal (Decrypt) and not seal")
    step_actions = {
        a for s in statements(of_type("AWS::IAM::Role").get(step_role or "", {})) for a in listify(s.get("Action"))
    }
    r.check(
        not any(a.lower().startswith(("eks:", "sts:")) and a != "sts:GetWebIdentityToken" for a in step_actions),
        "run-step is granted nothing for EKS tokens (a presigned sts:GetCallerIdentity needs no permission)",
        f"actions {sorted(a for a in step_actions if a.lower().startswith(('eks:', 'sts:')))}",
    )
    # AWS outbound identity federation: the functions that sign in to Entra may ask for a web
    # identity token, only for Entra's token exchange and at most 5 minutes long; the others not.
    for b, l in by_bin.items():
        role = of_type("AWS::IAM::Role").get(getatt_target(function_props(tpl, l).get("Role"), "Arn") or "", {})
        grants = [s for s in statements(role) if "sts:GetWebIdentityToken" in listify(s.get("Action"))]
        bounded = all(
            ((s.get("Condition") or {}).get("ForAllValues:StringEquals") or {}).get("sts:IdentityTokenAudience")
            in (ENTRA_AUDIENCE, [ENTRA_AUDIENCE])
            and int(((s.get("Condition") or {}).get("NumericLessThanEquals") or {}).get("sts:DurationSeconds", 10**6)) <= 300
            and listify(s.get("Action")) == ["sts:GetWebIdentityToken"]
            for s in grants
        )
        if b in ENTRA_SIGN_IN:
            r.check(
                len(grants) == 1 and bounded,
                f"{b}: may get a web identity token for {ENTRA_AUDIENCE} only, at most 300 s (Entra federation)",
                f"grants {grants}",
            )
        else:
            r.check(not grants, f"{b}: may not get web identity tokens (it does not sign in to Entra)", f"grants {grants}")
    # The stored-secret fallback: no Entra secret by default; given EntraClientSecretArn, the
    # functions that sign in to Entra may read that one secret, run-step may also put its new
    # versions (rotator_own_secret), and no other function may touch it.
    arn_param = params.get("EntraClientSecretArn") or {}
    r.check(
        arn_param.get("Default") == "" and (params.get("EntraClientSecret") or {}).get("Default") == "",
        "no Entra secret by default: EntraClientSecret and EntraClientSecretArn are empty unless given",
    )
    for b, l in by_bin.items():
        role = of_type("AWS::IAM::Role").get(getatt_target(function_props(tpl, l).get("Role"), "Arn") or "", {})
        plain = [s for s in statements(role) if any(str(a).startswith("secretsmanager:") for a in listify(s.get("Action")))]
        conditional = []
        for pol in (role.get("Properties") or {}).get("Policies") or []:
            branches = pol.get("Fn::If") if isinstance(pol, dict) else None
            if not branches:
                continue
            condition, given, absent = branches
            statements_given = listify(((given or {}).get("PolicyDocument") or {}).get("Statement"))
            conditional.append((condition, statements_given, ref_target(absent)))
        want = {"secretsmanager:GetSecretValue"} | ({"secretsmanager:PutSecretValue"} if b == "run-step" else set())
        ok = (
            not plain
            and (
                (b not in ENTRA_SIGN_IN and not conditional)
                or (
                    b in ENTRA_SIGN_IN
                    and len(conditional) == 1
                    and conditional[0][0] == "HasEntraClientSecretArn"
                    and conditional[0][2] == "AWS::NoValue"
                    and len(conditional[0][1]) == 1
                    and set(listify(conditional[0][1][0].get("Action"))) == want
                    and [ref_target(x) for x in listify(conditional[0][1][0].get("Resource"))] == ["EntraClientSecretArn"]
                )
            )
        )
        r.check(
            ok,
            f"{b}: " + (f"{sorted(want)} on the EntraClientSecretArn secret only, only when given" if b in ENTRA_SIGN_IN else "no Secrets Manager access"),
            f"unconditional {plain}, conditional {conditional}",
        )
    outputs = tpl.get("Outputs") or {}
    r.check(
        getatt_target((outputs.get("RunStepRoleArn") or {}).get("Value"), "Arn") == step_role,
        "the run-step role's ARN is an output, for the clusters' EKS access entries",
    )
    others = [getatt_target(function_props(tpl, l).get("Role"), "Arn") for b, l in by_bin.items() if b not in ("rotate", "run-step")]
    r.check(
        all(not key_grants(o or "") for o in others),
        "the other functions use the key only through DynamoDB, Lambda or SNS (kms:ViaService)",
    )

    # --- the table ------------------------------------------------------------------------------
    tables = of_type("AWS::DynamoDB::Table")
    t = next(iter(tables.values()), {})
    tp = t.get("Properties") or {}
    attrs = {a["AttributeName"]: a["AttributeType"] for a in listify(tp.get("AttributeDefinitions"))}
    keys_of = lambda schema: [(k["AttributeName"], k["KeyType"]) for k in listify(schema)]  # noqa: E731
    gsis = {g["IndexName"]: g for g in listify(tp.get("GlobalSecondaryIndexes"))}
    r.check(
        len(tables) == 1
        and tp.get("BillingMode") == "PAY_PER_REQUEST"
        and keys_of(tp.get("KeySchema")) == [("pk", "HASH"), ("sk", "RANGE")]
        and all(attrs.get(a) == "S" for a in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"))
        and all(
            i in gsis
            and keys_of(gsis[i].get("KeySchema")) == [(f"{i}pk", "HASH"), (f"{i}sk", "RANGE")]
            and (gsis[i].get("Projection") or {}).get("ProjectionType") == "ALL"
            for i in ("gsi1", "gsi2")
        ),
        "one on-demand table: pk/sk, gsi1 and gsi2 (all strings, projection ALL)",
    )
    r.check(
        (tp.get("TimeToLiveSpecification") or {}).get("AttributeName") == "expires_at"
        and (tp.get("TimeToLiveSpecification") or {}).get("Enabled") is True
        and (tp.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled") is True
        and (tp.get("SSESpecification") or {}).get("SSEType") == "KMS"
        and getatt_target((tp.get("SSESpecification") or {}).get("KMSMasterKeyId"), "Arn") in keys
        and tp.get("DeletionProtectionEnabled") is True
        and t.get("DeletionPolicy") == "Retain"
        and t.get("UpdateReplacePolicy") == "Retain",
        "the table: TTL on expires_at, point-in-time recovery, the stack's key, deletion protection, retained",
    )

    # --- the HTTP API ---------------------------------------------------------------------------
    apis = of_type("AWS::Serverless::HttpApi")
    api_id = next(iter(apis), None)
    routes: dict[tuple[str, str], dict] = {}
    for lid in functions:
        for e in ((function_props(tpl, lid).get("Events")) or {}).values():
            if e.get("Type") == "HttpApi":
                ep = e.get("Properties") or {}
                if ref_target(ep.get("ApiId")) == api_id:
                    routes[(str(ep.get("Method")).upper(), ep.get("Path"))] = {"fn": lid, **ep}
    r.check(
        set(routes) == ROUTES and {v["fn"] for v in routes.values()} == {by_bin.get("http-api")},
        "the HTTP API's routes are the product's, all on http-api",
        f"routes {sorted(routes)}",
    )
    open_routes = {k for k, v in routes.items() if ((v.get("Auth") or {}).get("Authorizer")) == "NONE"}
    r.check(open_routes == UNAUTHENTICATED, "only GET /healthz skips the authorizer", f"open {sorted(open_routes)}")
    ap = (apis.get(api_id) or {}).get("Properties") or {}
    auth = ap.get("Auth") or {}
    jwt = ((auth.get("Authorizers") or {}).get(auth.get("DefaultAuthorizer") or "") or {}).get("JwtConfiguration") or {}
    r.check(
        sub_text(jwt.get("issuer")) == "https://login.microsoftonline.com/${EntraTenantId}/v2.0"
        and [ref_target(a) for a in listify(jwt.get("audience"))] == ["ApiAudience"],
        "default authorizer: Entra v2 issuer of EntraTenantId, audience ApiAudience",
        f"JwtConfiguration {jwt}",
    )
    r.check(
        bool((ap.get("AccessLogSettings") or {}).get("DestinationArn"))
        and bool((ap.get("DefaultRouteSettings") or {}).get("ThrottlingRateLimit")),
        "the HTTP API logs access and throttles by default",
    )

    # --- outputs --------------------------------------------------------------------------------
    outs = tpl.get("Outputs") or {}
    out_refs = {ref_target(o.get("Value")) or getatt_target(o.get("Value")) for o in outs.values()}
    want = {named.get(f"{q}-dlq.fifo") for q in QUEUES} | {topic, "OnCallPolicy"}
    r.check(
        want <= out_refs and "ApiUrl" in outs and "TableName" in outs and "KmsKeyArn" in outs,
        "outputs: API URL, table, key, on-call topic and policy, each dead-letter queue",
        f"missing {sorted(str(x) for x in want - out_refs)}",
    )

    # --- the template agrees with the code --------------------------------------------------------
    messages = ROOT / "shared" / "src" / "messages.rs"
    if messages.exists():
        block = re.search(r"pub mod queues \{(.*?)\n\}", messages.read_text(encoding="utf-8"), re.S)
        code_queues = set(re.findall(r'pub const [A-Z_]+: &str = "([^"]+)";', block.group(1))) if block else set()
        r.check(code_queues == set(QUEUES), "the queues are the code's (shared/src/messages.rs)", f"code has {sorted(code_queues)}")
    settings = ROOT / "aws" / "src" / "settings.rs"
    if settings.exists():
        names = set(re.findall(r'pub const [A-Z_]+_VAR: &str = "([^"]+)";', settings.read_text(encoding="utf-8")))
        need = {"ROTATOR_AWS_TABLE", "ROTATOR_AWS_KMS_KEY", "ROTATOR_AWS_QUEUE_PREFIX"}
        r.check(need <= names, "the environment names are the code's (aws/src/settings.rs)", f"code reads {sorted(names)}")


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else HERE / "template.yaml"
    report = Report()
    try:
        tpl = load(path)
    except (OSError, yaml.YAMLError) as e:
        print(f"FAIL read {path}: {e}")
        print("0 passed, 1 failed")
        return 1
    try:
        run(tpl, report)
    except Exception as e:  # a template too broken to inspect is a failure, not a traceback
        report.check(False, "inspect the template", f"{type(e).__name__}: {e}")
    print(f"{report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
