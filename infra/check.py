#!/usr/bin/env python3
"""Offline validation of the deploy templates (CI runs it from .ci/run).

For each template: cfn-lint with the SAM transform applied (cfn-lint 1.51.0 + aws-sam-translator 1.110.0,
pinned in infra/requirements.txt), then our own security rules. Then every check is proven able to fail: broken
variants are derived from the real template by small edits, and each must be rejected for the expected reason.
Prints one line per check and a closing `N passed, M failed`; exits non-zero on any failure.
"""
import collections
import json
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml
from cfnlint.decode import decode_str
from pycep import BicepParser

ROOT = pathlib.Path(__file__).resolve().parent
SAM = ROOT / "aws" / "template.yaml"
BICEP = ROOT / "azure" / "main.bicep"
ARM = ROOT / "azure" / "azuredeploy.json"
UI = ROOT / "azure" / "createUiDefinition.json"
DRAIN = ROOT.parent / "templates" / "drain" / "deployment.yaml"
PACKAGE = ROOT.parent / "templates" / "azure-functions" / "package.py"
DOCKERFILE = ROOT.parent / "templates" / "drain" / "Dockerfile"
# aks-handler waits DRAIN_GRACE_SECS + 2 s for the batches in flight, then releases its partitions.
SHUTDOWN_MARGIN_SECS = 5


def cfn_lint(path: pathlib.Path) -> list[str]:
    result = subprocess.run(
        [str(pathlib.Path(sys.executable).parent / "cfn-lint"), "--format", "parseable", str(path)],
        capture_output=True,
        text=True,
    )
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def resources(template: dict, kind: str) -> dict:
    return {name: r for name, r in template.get("Resources", {}).items() if r.get("Type") == kind}


def security_findings(text: str) -> list[str]:
    """Our rules: what the incumbents' templates got wrong (plaintext keys, unencrypted queues, lost events)."""
    template, matches = decode_str(text)
    if matches or template is None:
        return [f"template does not parse: {m}" for m in matches] or ["template does not parse"]
    findings = []
    param = template.get("Parameters", {}).get("LogTypeConfig", {})
    if str(param.get("NoEcho", "false")).lower() != "true":
        findings.append("parameter LogTypeConfig must be NoEcho")
    for name, fn in resources(template, "AWS::Serverless::Function").items():
        variables = fn.get("Properties", {}).get("Environment", {}).get("Variables", {})
        for key, value in variables.items():
            if key.lower() == "logtypeconfig" or value == {"Ref": "LogTypeConfig"}:
                findings.append(f"{name}: the logtypeconfig must not be a plaintext environment variable ({key})")
        invoke = fn.get("Properties", {}).get("EventInvokeConfig", {})
        if "OnFailure" not in invoke.get("DestinationConfig", {}):
            findings.append(f"{name}: EventInvokeConfig needs an OnFailure destination (undelivered events kept)")
        if "MaximumEventAgeInSeconds" not in invoke:
            findings.append(f"{name}: EventInvokeConfig needs a bounded MaximumEventAgeInSeconds")
    permissions = {
        name
        for name, p in resources(template, "AWS::Lambda::Permission").items()
        if p.get("Properties", {}).get("Principal") == "logs.amazonaws.com"
    }
    for name, f in resources(template, "AWS::Logs::SubscriptionFilter").items():
        depends = f.get("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else depends
        if not permissions.intersection(depends):
            findings.append(f"{name}: must DependsOn the logs.amazonaws.com invoke permission")
        if "RoleArn" in f.get("Properties", {}):
            findings.append(f"{name}: a Lambda destination takes no RoleArn")
    findings += first_deploy_aws(template)
    for name, q in resources(template, "AWS::SQS::Queue").items():
        props = q.get("Properties", {})
        if props.get("SqsManagedSseEnabled") is not True and "KmsMasterKeyId" not in props:
            findings.append(f"{name}: queue must be encrypted")
    return findings


# Lambda limits the environment to 4 KB in all (keys and values); keep a margin for what AWS adds.
ENV_BUDGET = 3 * 1024
# A resource's Ref in an environment value (an ARN) is counted at this length.
ARN_LENGTH = 128


def first_deploy_aws(template: dict) -> list[str]:
    """What a first real deployment hits although cfn-lint passes."""
    findings = []
    params = template.get("Parameters", {})
    groups = resources(template, "AWS::Logs::LogGroup")
    for name, fn in resources(template, "AWS::Serverless::Function").items():
        props = fn.get("Properties", {})
        # The environment at its largest: each parameter at its MaxLength.
        size = 0
        for key, value in props.get("Environment", {}).get("Variables", {}).items():
            size += len(key)
            if isinstance(value, str):
                size += len(value)
            elif isinstance(value, dict) and "Ref" in value and value["Ref"] in params:
                limit = params[value["Ref"]].get("MaxLength")
                if limit is None:
                    findings.append(f"{name}: environment variable {key} takes parameter {value['Ref']}, which has no MaxLength (the environment is limited to 4 KB)")
                    continue
                size += int(limit)
            else:
                size += ARN_LENGTH
        if size > ENV_BUDGET:
            findings.append(f"{name}: the environment can reach {size} bytes, over {ENV_BUDGET} (Lambda's limit is 4 KB): ship large values (the audit policy) inside the package")
        # An explicit log group, so its retention is set instead of "never expire".
        group = props.get("LoggingConfig", {}).get("LogGroup")
        target = group.get("Ref") if isinstance(group, dict) else None
        if target not in groups or "RetentionInDays" not in groups[target].get("Properties", {}):
            findings.append(f"{name}: LoggingConfig.LogGroup must name a log group of this template with RetentionInDays")
        # The metrics line has no "level", which Lambda's JSON log format reads as INFO: a stricter application
        # log level drops it, and every metric and alarm on it with it.
        level = props.get("LoggingConfig", {}).get("ApplicationLogLevel", "INFO")
        if not isinstance(level, str) or level.upper() not in ("TRACE", "DEBUG", "INFO"):
            findings.append(f"{name}: LoggingConfig.ApplicationLogLevel {json.dumps(level, default=str)} can drop the metrics line (Lambda reads a line without a level as INFO): set INFO, DEBUG or TRACE")
    return findings


def sam_command_findings(readme: str, template_text: str) -> list[str]:
    """`sam build` resolves the function's architecture from its own parameter overrides, not `sam deploy`'s:
    where the template takes Architecture as a parameter, the documented build must pass it too."""
    if "Architectures: [!Ref Architecture]" not in template_text:
        return []
    builds = [line for line in readme.splitlines() if line.strip().startswith("sam build")]
    deploys = [line for line in readme.splitlines() if "Architecture=" in line]
    findings = []
    if not builds:
        findings.append("infra/README.md: no sam build command")
    for line in builds:
        if "Architecture=" not in line:
            findings.append(f"infra/README.md: `{line.strip()}` must pass --parameter-overrides Architecture=… (sam build does not see sam deploy's overrides, and would ship an arm64 binary to an x86_64 function)")
    if not deploys:
        findings.append("infra/README.md: the deploy command must pass Architecture= as well")
    return findings


def unexplained_suppressions(path: pathlib.Path, framework: str) -> list[str]:
    text = path.read_text()
    findings = []
    if framework == "cloudformation":
        template, _ = decode_str(text)
        for name, r in (template or {}).get("Resources", {}).items():
            for skip in r.get("Metadata", {}).get("checkov", {}).get("skip", []):
                if not str(skip.get("comment", "")).strip():
                    findings.append(f"{name}: checkov suppression {skip.get('id')} has no reason")
    elif framework == "kubernetes":
        # metadata.annotations: checkov.io/skipN: ID=reason
        for doc in yaml.safe_load_all(text):
            for key, value in ((doc or {}).get("metadata", {}).get("annotations") or {}).items():
                if key.startswith("checkov.io/skip") and not str(value).partition("=")[2].strip():
                    findings.append(f"checkov suppression {value} has no reason")
    elif framework == "dockerfile":
        for m in re.finditer(r"#checkov:skip=([A-Z_0-9]+)(?::[ \t]*([^\n]*))?", text):
            if not (m.group(2) or "").strip():
                findings.append(f"checkov suppression {m.group(1)} has no reason")
    else:
        # Bicep: `// checkov:skip=ID: reason`; ARM: metadata.checkov ["skip=ID: reason"].
        for m in re.finditer(r"checkov:skip=([A-Z_0-9]+)(?::[ \t]*([^\n]*))?", text) if framework == "bicep" else ():
            if not (m.group(2) or "").strip():
                findings.append(f"checkov suppression {m.group(1)} has no reason")
        if framework == "arm":
            for r in json.loads(text).get("resources", []):
                for item in r.get("metadata", {}).get("checkov", []):
                    m = re.match(r"skip=([A-Z_0-9]+)(?::[ \t]*(.*))?", str(item))
                    if not m or not (m.group(2) or "").strip():
                        findings.append(f"{r.get('type')}: checkov suppression '{item}' has no reason")
    return findings


def checkov(path: pathlib.Path, framework: str = "cloudformation") -> list[str]:
    """checkov (offline, no guideline download); every suppression must say why."""
    findings = unexplained_suppressions(path, framework)
    result = subprocess.run(
        [str(pathlib.Path(sys.executable).parent / "checkov"), "-f", str(path), "--framework", framework,
         "--skip-download", "--output", "json", "--quiet"],
        capture_output=True,
        text=True,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        return findings + [f"checkov did not run: {result.stderr.strip()[-300:]}"]
    reports = report if isinstance(report, list) else [report]
    for r in reports:
        for failed in r.get("results", {}).get("failed_checks", []):
            findings.append(f"checkov {failed['check_id']} {failed['resource']}: {failed['check_name']}")
        if r.get("summary", {}).get("parsing_errors"):
            findings.append("checkov could not parse the template")
    return findings


def bicep(text: str) -> dict:
    return BicepParser().parse(text=text)


def arm_structure(arm: dict) -> list[str]:
    """What an ARM deployment needs before Azure would even look at it (no ARM engine runs offline)."""
    findings = []
    if "deploymentTemplate.json" not in arm.get("$schema", "") or "contentVersion" not in arm:
        findings.append("ARM: $schema must be a deploymentTemplate schema, contentVersion required")
    params, variables = set(arm.get("parameters", {})), set(arm.get("variables", {}))
    text = json.dumps(arm)
    for ref in set(re.findall(r"parameters\('([^']+)'\)", text)) - params:
        findings.append(f"ARM: parameters('{ref}') is not declared")
    for ref in set(re.findall(r"variables\('([^']+)'\)", text)) - variables:
        findings.append(f"ARM: variables('{ref}') is not declared")
    for i, r in enumerate(arm.get("resources", [])):
        for key in ("type", "apiVersion", "name"):
            if key not in r:
                findings.append(f"ARM: resources[{i}] has no {key}")
    for value in re.findall(r'"(\[[^"]*\])"', text):
        if value.count("(") != value.count(")"):
            findings.append(f"ARM: unbalanced parentheses in {value[:60]}")
    return findings


def azure_findings(bicep_text: str, arm_text: str) -> list[str]:
    findings = []
    try:
        b = bicep(bicep_text)
    except Exception as e:  # pycep raises lark errors of several types
        return [f"main.bicep does not parse: {str(e).splitlines()[0]}"]
    try:
        arm = json.loads(arm_text)
    except json.JSONDecodeError as e:
        return [f"azuredeploy.json is not JSON: {e}"]
    findings += arm_structure(arm)

    # The two files declare the same parameters (names, secure-ness, defaults, allowed values) and resources.
    bparams, aparams = b.get("parameters", {}), arm.get("parameters", {})
    if set(bparams) != set(aparams):
        findings.append(f"parameters differ: bicep-only {sorted(set(bparams) - set(aparams))}, arm-only {sorted(set(aparams) - set(bparams))}")
    for name in set(bparams) & set(aparams):
        secure = any(d.get("type") == "secure" for d in bparams[name].get("decorators", []))
        if secure != (aparams[name]["type"].lower() in ("securestring", "secureobject")):
            findings.append(f"parameter {name}: secure in one file only")
        allowed = next((d.get("argument") for d in bparams[name].get("decorators", []) if d.get("type") == "allowed"), None)
        if allowed is not None and sorted(allowed) != sorted(aparams[name].get("allowedValues", [])):
            findings.append(f"parameter {name}: allowed values differ")
        default = bparams[name].get("default")
        if isinstance(default, (str, int, bool)) and default != aparams[name].get("defaultValue"):
            findings.append(f"parameter {name}: default differs")
    btypes = collections.Counter(r["type"] for r in b.get("resources", {}).values() if not r.get("existing"))
    atypes = collections.Counter(r["type"] for r in arm.get("resources", []))
    if btypes != atypes:
        findings.append(f"resource types differ: bicep-only {dict(btypes - atypes)}, arm-only {dict(atypes - btypes)}")

    # Security rules, on both files (the incumbents' ARM template failed every one of these).
    if not any(d.get("type") == "secure" for d in bparams.get("logTypeConfig", {}).get("decorators", [])):
        findings.append("main.bicep: logTypeConfig must be @secure()")
    if aparams.get("logTypeConfig", {}).get("type", "").lower() != "securestring":
        findings.append("azuredeploy.json: logTypeConfig must be a securestring")
    configs = [("main.bicep", r["type"], r.get("config", {})) for r in b.get("resources", {}).values()]
    configs += [("azuredeploy.json", r["type"], r) for r in arm.get("resources", [])]
    for origin, kind, config in configs:
        props = config.get("properties", {}) if isinstance(config, dict) else {}
        if kind == "Microsoft.Storage/storageAccounts":
            for key, want in (("supportsHttpsTrafficOnly", True), ("allowBlobPublicAccess", False), ("allowSharedKeyAccess", False), ("minimumTlsVersion", "TLS1_2")):
                if props.get(key) != want:
                    findings.append(f"{origin}: storage {key} must be {want}")
        if kind == "Microsoft.Web/sites":
            site = json.dumps(props)
            if props.get("httpsOnly") is not True or '"alwaysOn": true' not in site:
                findings.append(f"{origin}: function app must be httpsOnly with alwaysOn")
            if "Microsoft.KeyVault(" in site:
                findings.append(f"{origin}: the site must not carry the Key Vault reference (its settings would resolve before the identity may read the vault): use a sites/config appsettings resource")
        if kind == "Microsoft.Web/sites/config":
            values = json.dumps(list(props.values()))
            # An exact reference to the parameter (bicep: the bare name; ARM: parameters('logTypeConfig')).
            if '"logTypeConfig"' in values or "parameters('logTypeConfig')" in values:
                findings.append(f"{origin}: the logtypeconfig must reach the app as a Key Vault reference, not in clear")
            if "Microsoft.KeyVault(SecretUri=" not in values:
                findings.append(f"{origin}: the logtypeconfig setting must be a Key Vault reference")
        if kind == "Microsoft.Insights/diagnosticSettings":
            logs = props.get("logs", [])
            if len(logs) != 1:
                findings.append(f"{origin}: the diagnostic setting must enable exactly one audit category (both duplicate every write)")
    for origin, text in (("main.bicep", bicep_text), ("azuredeploy.json", arm_text)):
        if "RootManageSharedAccessKey" in text:
            findings.append(f"{origin}: never the namespace root key")
        # Sovereign clouds (China, US Government) have other DNS suffixes: take them from the resources.
        for suffix in CLOUD_SUFFIXES:
            if suffix in text:
                findings.append(f"{origin}: hard-coded public-cloud suffix {suffix}: take the endpoint from the resource (serviceBusEndpoint, primaryEndpoints) or environment()")
    findings += first_deployment_findings(b, arm)
    return findings


CLOUD_SUFFIXES = ("servicebus.windows.net", "vault.azure.net", "core.windows.net", "azurewebsites.net")

# Azure's naming rules for the resource types the template names (learn.microsoft.com, "Naming rules and
# restrictions for Azure resources"): (min, max, pattern).
NAME_RULES = {
    "Microsoft.Storage/storageAccounts": (3, 24, r"[a-z0-9]+"),
    "Microsoft.KeyVault/vaults": (3, 24, r"[a-zA-Z](?!.*--)[a-zA-Z0-9-]*[a-zA-Z0-9]"),
    "Microsoft.EventHub/namespaces": (6, 50, r"[a-zA-Z][a-zA-Z0-9-]*[a-zA-Z0-9](?<!-sb)(?<!-mgmt)"),
    "Microsoft.OperationalInsights/workspaces": (4, 63, r"[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]"),
    "Microsoft.Insights/components": (1, 260, r"[^%&\\?/\x00-\x1f]*[^%&\\?/\x00-\x1f. ]"),
    "Microsoft.Web/serverfarms": (1, 60, r"[a-zA-Z0-9-]+"),
    "Microsoft.Web/sites": (2, 60, r"[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]"),
}
ROLE_IDS = {
    "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}


class ArmEval:
    """Just enough of the ARM expression language to compute resource names: parameters, variables,
    format, concat, take, toLower, toUpper, replace, if, empty, uniqueString (a 13-character stand-in)."""

    TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<p>[(),.\[\]]))")

    def __init__(self, arm: dict, params: dict, unique: str):
        self.arm, self.params, self.unique = arm, params, unique

    def value(self, v):
        if isinstance(v, str) and v.startswith("[") and v.endswith("]") and not v.startswith("[["):
            # Re-entrant: variables('x') evaluates x's own expression in the middle of this one.
            saved = getattr(self, "tokens", None), getattr(self, "pos", 0)
            self.tokens = [m for m in self.TOKEN.finditer(v[1:-1]) if m.group(0).strip()]
            self.pos = 0
            try:
                return self.expr()
            finally:
                self.tokens, self.pos = saved
        return v

    def next(self):
        t = self.tokens[self.pos]
        self.pos += 1
        return t

    def expr(self):
        t = self.next()
        if t.group("str") is not None:
            return t.group("str")[1:-1].replace("''", "'")
        if t.group("num") is not None:
            return int(t.group("num"))
        name = t.group("name")
        assert self.next().group("p") == "(", name
        args = []
        while self.tokens[self.pos].group("p") != ")":
            args.append(self.expr())
            if self.tokens[self.pos].group("p") == ",":
                self.pos += 1
        self.pos += 1
        result = self.call(name.lower(), args)
        while self.pos < len(self.tokens) and self.tokens[self.pos].group("p") == ".":
            self.pos += 1
            result = result[self.next().group("name")]
        return result

    def call(self, name, args):
        if name == "parameters":
            return self.params[args[0]]
        if name == "variables":
            return self.value(self.arm["variables"][args[0]])
        if name == "format":
            return re.sub(r"\{(\d+)\}", lambda m: str(args[1 + int(m.group(1))]), args[0])
        if name == "concat":
            return "".join(str(a) for a in args)
        if name == "take":
            return args[0][: args[1]]
        if name == "tolower":
            return args[0].lower()
        if name == "toupper":
            return args[0].upper()
        if name == "replace":
            return args[0].replace(args[1], args[2])
        if name == "if":
            return args[1] if args[0] else args[2]
        if name == "empty":
            return not args[0]
        if name == "uniquestring":
            return self.unique
        if name == "resourcegroup":
            return {"id": "/subscriptions/0/resourceGroups/rg", "location": "westeurope"}
        raise ValueError(f"ARM function {name}() is not evaluated by infra/check.py")


def name_findings(arm: dict) -> list[str]:
    """Every resource name the template computes, at the parameters' extremes, against its type's rules."""
    findings = []
    prefix = arm.get("parameters", {}).get("namePrefix", {})
    low, high = prefix.get("minLength", 1), prefix.get("maxLength", 24)
    prefixes = {"a" * low, "1" * low, "z" * high, "9" * high, ("ab-" * high)[:high]}
    # uniqueString: 13 characters of base32, which may start with a digit.
    for unique in ("0123456789abc", "zzzzzzzzzzzzz"):
        for value in sorted(prefixes):
            params = {n: p.get("defaultValue") for n, p in arm.get("parameters", {}).items()}
            params.update(namePrefix=value, aksClusterName="cluster")
            evaluator = ArmEval(arm, params, unique)
            for r in arm.get("resources", []):
                rule = NAME_RULES.get(r.get("type"))
                if not rule:
                    continue
                try:
                    name = evaluator.value(r["name"])
                except Exception as e:  # a broken expression fails here, named, not the whole check
                    findings.append(f"{r['type']}: name {r['name']} cannot be evaluated: {e}")
                    continue
                low_len, high_len, pattern = rule
                if not low_len <= len(name) <= high_len or not re.fullmatch(pattern, name):
                    findings.append(f"{r['type']}: name '{name}' (namePrefix '{value}') breaks the naming rule: {low_len}-{high_len} characters, {pattern}")
    return sorted(set(findings))


def resource_configs(b: dict) -> dict:
    """Bicep resources this template creates (not `existing` ones) by symbol, a conditional one's body unwrapped."""
    out = {}
    for symbol, r in b.get("resources", {}).items():
        if r.get("existing"):
            continue
        config = r.get("config", {})
        if isinstance(config, dict) and "condition" in config and isinstance(config.get("config"), dict):
            config = config["config"]
        out[symbol] = (r["type"], config)
    return out


def first_deployment_findings(b: dict, arm: dict) -> list[str]:
    """What a first real deployment hits although every linter passes."""
    findings = name_findings(arm)
    bres = resource_configs(b)
    # The app settings resolve the Key Vault reference: only once the identity may read the secret.
    for symbol, (kind, config) in bres.items():
        if kind != "Microsoft.Web/sites/config":
            continue
        depends = config.get("dependsOn") or []
        kv_roles = [s for s in depends if s in bres and bres[s][0] == "Microsoft.Authorization/roleAssignments" and "keyVaultSecretsUser" in json.dumps(bres[s][1])]
        if not kv_roles:
            findings.append("main.bicep: the app settings must depend on the Key Vault Secrets User role assignment")
    for r in arm.get("resources", []):
        if r.get("type") == "Microsoft.Web/sites/config" and not any("keyVaultSecretsUser" in d for d in r.get("dependsOn", [])):
            findings.append("azuredeploy.json: the app settings must depend on the Key Vault Secrets User role assignment")
    if not any(k == "Microsoft.Web/sites/config" for k, _ in bres.values()):
        findings.append("main.bicep: no sites/config appsettings resource")
    # Application Insights without local auth takes telemetry only from an identity with the publisher role.
    for origin, configs in (("main.bicep", list(bres.values())), ("azuredeploy.json", [(r.get("type"), r) for r in arm.get("resources", [])])):
        text = {kind: [] for kind, _ in configs}
        for kind, config in configs:
            text[kind].append(json.dumps(config))
        components = [c for k, c in configs if k == "Microsoft.Insights/components"]
        if not any(c.get("properties", {}).get("DisableLocalAuth") is True for c in components):
            continue
        settings = " ".join(text.get("Microsoft.Web/sites/config", []))
        if "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" not in settings or "Authorization=AAD" not in settings:
            findings.append(f"{origin}: Application Insights has local auth off: the app needs APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD")
        component_symbols = {sym for sym, (k, _) in bres.items() if k == "Microsoft.Insights/components"}

        def publishes(config: dict) -> bool:
            role = json.dumps(config.get("properties", {}).get("roleDefinitionId", ""))
            scope = config.get("scope", "")
            on_component = scope in component_symbols or "Microsoft.Insights/components/" in json.dumps(scope)
            return "monitoringMetricsPublisher" in role and on_component

        if not any(publishes(c) for k, c in configs if k == "Microsoft.Authorization/roleAssignments"):
            findings.append(f"{origin}: Application Insights has local auth off: the app's identity needs the Monitoring Metrics Publisher role on the component")
    # Our own reading of the vault's recovery settings: checkov cannot read a conditional resource's body in Bicep.
    vaults = [(origin, c) for origin, cs in (("main.bicep", [c for k, c in bres.values() if k == "Microsoft.KeyVault/vaults"]), ("azuredeploy.json", [r for r in arm.get("resources", []) if r.get("type") == "Microsoft.KeyVault/vaults"])) for c in cs]
    for origin, config in vaults:
        props = config.get("properties", {})
        if props.get("enablePurgeProtection") is not True or props.get("enableSoftDelete") is not True or props.get("enableRbacAuthorization") is not True:
            findings.append(f"{origin}: the Key Vault needs enableSoftDelete, enablePurgeProtection and enableRbacAuthorization")
    # The diagnostic setting sends only to a hub in the cluster's region: the namespace takes the cluster's.
    for symbol, (kind, config) in bres.items():
        if kind == "Microsoft.EventHub/namespaces":
            location = json.dumps(config.get("location"))
            if '"aks"' not in location or "location" not in location:
                findings.append("main.bicep: the Event Hub namespace must take the cluster's location (aks.location): a diagnostic setting cannot send to another region")
    for r in arm.get("resources", []):
        if r.get("type") == "Microsoft.EventHub/namespaces":
            location = str(r.get("location", ""))
            if "Microsoft.ContainerService/managedClusters" not in location or not location.rstrip("]").endswith(".location"):
                findings.append("azuredeploy.json: the Event Hub namespace must take the cluster's location (reference(the cluster).location): a diagnostic setting cannot send to another region")
    roles = json.dumps(arm.get("variables", {}).get("roles", {})) + json.dumps(b.get("variables", {}).get("roles", {}))
    for name, role_id in ROLE_IDS.items():
        if name in json.dumps(arm) and role_id not in roles:
            findings.append(f"role {name} must be {role_id}")
    return findings


def check_azure(bicep_path: pathlib.Path, arm_path: pathlib.Path, with_checkov: bool = True) -> list[str]:
    findings = azure_findings(bicep_path.read_text(), arm_path.read_text())
    if with_checkov:
        findings += checkov(bicep_path, "bicep") + checkov(arm_path, "arm")
    return findings


def drain_findings(text: str) -> list[str]:
    """What a first deployment of drain mode needs (templates/drain/deployment.yaml), beyond checkov."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as e:
        return [f"drain: deployment.yaml does not parse: {str(e).splitlines()[0]}"]
    kinds = collections.defaultdict(list)
    for d in docs:
        kinds[d.get("kind")].append(d)
    if len(kinds["Deployment"]) != 1:
        return ["drain: exactly one Deployment expected"]
    deployment = kinds["Deployment"][0]
    pod = deployment.get("spec", {}).get("template", {})
    spec = pod.get("spec", {})
    containers = spec.get("containers") or [{}]
    container = containers[0]
    env = {e.get("name"): e for e in container.get("env", [])}

    def value(name: str, default: str | None = None) -> str | None:
        return env.get(name, {}).get("value", default)

    findings = []
    if container.get("args") != ["drain"]:
        findings.append("drain: the container must run `aks-handler drain` (args: [drain])")
    for name in ("EVENTHUB_NAMESPACE", "EVENTHUB_NAME", "CHECKPOINT_CONTAINER_URL", "FAILOVER_CONTAINER_URL"):
        if name not in env:
            findings.append(f"drain: {name} is required")
    # Workload identity: the pod label, the ServiceAccount's client-id annotation, and the credential.
    if (pod.get("metadata", {}).get("labels") or {}).get("azure.workload.identity/use") != "true":
        findings.append('drain: the pod template needs the label azure.workload.identity/use: "true"')
    accounts = {a["metadata"]["name"]: a for a in kinds["ServiceAccount"]}
    account = accounts.get(spec.get("serviceAccountName"), {})
    if not (account.get("metadata", {}).get("annotations") or {}).get("azure.workload.identity/client-id"):
        findings.append("drain: serviceAccountName must name a ServiceAccount annotated azure.workload.identity/client-id")
    if value("AZURE_CREDENTIAL") != "workload":
        findings.append("drain: AZURE_CREDENTIAL must be workload")
    # The logtypeconfig comes from a Secret, never in clear.
    configs = [n for n in env if n.lower().startswith("s247_") or n == "logTypeConfig"]
    if not configs:
        findings.append("drain: no logtypeconfig (S247_kube_audit, S247_kube_audit_admin or logTypeConfig)")
    for name in configs:
        if "secretKeyRef" not in (env[name].get("valueFrom") or {}):
            findings.append(f"drain: {name} must come from a Secret (valueFrom.secretKeyRef), not in clear")
    # Shutdown: Kubernetes' SIGKILL must not come before aks-handler's own grace period is over.
    try:
        grace = int(value("DRAIN_GRACE_SECS", "20"))
        termination = int(spec.get("terminationGracePeriodSeconds", 30))
    except (TypeError, ValueError):
        return findings + ["drain: DRAIN_GRACE_SECS and terminationGracePeriodSeconds must be whole seconds"]
    if termination < grace + SHUTDOWN_MARGIN_SECS:
        findings.append(f"drain: terminationGracePeriodSeconds ({termination}) must be at least DRAIN_GRACE_SECS ({grace}) + {SHUTDOWN_MARGIN_SECS}")
    # Probes on /healthz, on the port DRAIN_METRICS_ADDR listens on.
    try:
        port = int(value("DRAIN_METRICS_ADDR", "0.0.0.0:8080").rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return findings + ["drain: DRAIN_METRICS_ADDR must be host:port"]
    named = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
    for probe in ("readinessProbe", "livenessProbe"):
        get = (container.get(probe) or {}).get("httpGet", {})
        target = named.get(get.get("port"), get.get("port"))
        if get.get("path") != "/healthz" or target != port:
            findings.append(f"drain: {probe} must GET /healthz on port {port}")
    resources = container.get("resources", {})
    for key in ("cpu", "memory"):
        if key not in (resources.get("requests") or {}):
            findings.append(f"drain: resources.requests.{key} is required")
    if "memory" not in (resources.get("limits") or {}):
        findings.append("drain: resources.limits.memory is required")
    for policy in kinds["NetworkPolicy"]:
        ports = [p.get("port") for rule in policy.get("spec", {}).get("ingress", []) for p in rule.get("ports", [])]
        if ports and port not in ports:
            findings.append(f"drain: the NetworkPolicy must admit the metrics port {port}")
    return findings


def check_drain(path: pathlib.Path, dockerfile: pathlib.Path, with_checkov: bool = True) -> list[str]:
    findings = drain_findings(path.read_text())
    if with_checkov:
        findings += checkov(path, "kubernetes") + checkov(dockerfile, "dockerfile")
    return findings


def ui_findings(ui_text: str, arm_text: str) -> list[str]:
    """The portal's custom-deployment blade (createUiDefinition.json) fills the ARM template's parameters:
    every output must be one of them, every parameter without a default must be asked for, and the secure one
    must be typed into a password box."""
    try:
        ui, arm = json.loads(ui_text), json.loads(arm_text)
    except json.JSONDecodeError as e:
        return [f"createUiDefinition.json is not JSON: {e}"]
    params = arm.get("parameters", {})
    definition = ui.get("parameters", {})
    outputs = definition.get("outputs", {})
    elements = {e.get("name"): e for e in definition.get("basics", []) + [x for step in definition.get("steps", []) for x in step.get("elements", [])]}
    findings = []
    if ui.get("handler") != "Microsoft.Azure.CreateUIDef":
        findings.append("createUiDefinition.json: handler must be Microsoft.Azure.CreateUIDef")
    for name in sorted(set(outputs) - set(params)):
        findings.append(f"createUiDefinition.json: output {name} is not a parameter of azuredeploy.json")
    for name, p in params.items():
        if "defaultValue" not in p and name not in outputs:
            findings.append(f"createUiDefinition.json: parameter {name} has no default and is never asked for")
        if p.get("type", "").lower() == "securestring" and name in outputs:
            element = re.search(r"basics\('([^']+)'\)|steps\('[^']+'\)\.([^\]]+)", outputs[name])
            asked = elements.get(element.group(1) or element.group(2)) if element else None
            if not asked or asked.get("type") != "Microsoft.Common.PasswordBox":
                findings.append(f"createUiDefinition.json: the secure parameter {name} must come from a PasswordBox")
    return findings


def package_findings(source: str) -> list[str]:
    """The function-app zip keeps aks-handler's run bit whatever OS builds it: `source` (package.py) is run as
    on Windows, where zipfile marks entries MS-DOS (create_system 0) unless told otherwise and an unpacker then
    ignores the mode, and the zip is read back."""
    import contextlib
    import io
    import zipfile

    namespace = {"__name__": "package_under_check", "__file__": str(PACKAGE)}
    with tempfile.TemporaryDirectory() as tmp:
        binary, out = pathlib.Path(tmp) / "aks-handler", pathlib.Path(tmp) / "app.zip"
        binary.write_bytes(b"\x7fELF")
        platform = sys.platform
        try:
            exec(compile(source, str(PACKAGE), "exec"), namespace)
            sys.platform = "win32"
            with contextlib.redirect_stdout(io.StringIO()):
                namespace["package"](binary, out)
        except Exception as e:  # the script under check may be broken in any way
            return [f"package.py does not build a zip: {e}"]
        finally:
            sys.platform = platform
        with zipfile.ZipFile(out) as zf:
            names = set(zf.namelist())
            findings = [f"the zip lacks {n}" for n in ("host.json", "KubeAudit/function.json", "aks-handler") if n not in names]
            if "aks-handler" in names:
                info = zf.getinfo("aks-handler")
                if info.create_system != 3:
                    findings.append(f"aks-handler's zip entry has create_system {info.create_system}, not 3 (Unix): built on Windows, its run bit is lost")
                if not (info.external_attr >> 16) & 0o100:
                    findings.append("aks-handler's zip entry is not executable")
    return findings


def needs_checkov(expected: str) -> bool:
    """A broken variant only has to trip the check it targets; checkov is the slow one (seconds a run)."""
    return expected.startswith("checkov") or expected.endswith("no reason")


def check_template(path: pathlib.Path, with_checkov: bool = True) -> list[str]:
    return cfn_lint(path) + security_findings(path.read_text()) + (checkov(path) if with_checkov else [])


# (name, edit of the real template, text expected in the findings)
BROKEN_SAM = [
    # Only visible after the SAM transform (proves cfn-lint really applies it).
    ("bad architecture", ("Architectures: [!Ref Architecture]", "Architectures: [arm65]"), "arm65"),
    ("plaintext key", ("          LOGTYPECONFIG_SECRET_ARN: !Ref LogTypeConfigSecret",
                       "          logTypeConfig: !Ref LogTypeConfig"), "plaintext environment variable"),
    ("key echoed", ("    NoEcho: true\n", ""), "NoEcho"),
    ("filter races its permission", ("    DependsOn: LogsInvokePermission\n", ""), "DependsOn"),
    ("unencrypted queue", ("      SqsManagedSseEnabled: true\n", ""), "encrypted"),
    ("a finding left unexplained", ("          - id: CKV_AWS_117\n", "          - id: CKV_AWS_117\n            comment: \"\"\n          - id: CKV_AWS_999\n"), "CKV_AWS_117 has no reason"),
    ("a checkov finding not suppressed", ("- id: CKV_AWS_117", "- id: CKV_AWS_000"), "checkov CKV_AWS_117"),
    ("the shipped policy's base64 in the environment", ("    MaxLength: 2048\n", "    MaxLength: 3900\n"), "the environment can reach"),
    ("a policy parameter without a bound", ("    MaxLength: 2048\n", ""), "has no MaxLength"),
    ("function logs kept forever", ("      RetentionInDays: !Ref LogRetentionDays\n", ""), "RetentionInDays"),
    ("metrics dropped by the log level", ("        ApplicationLogLevel: INFO\n", "        ApplicationLogLevel: WARN\n"), "can drop the metrics line"),
    ("events dropped on failure", ("        DestinationConfig:\n          OnFailure:\n            Type: SQS\n            Destination: !GetAtt FailureQueue.Arn\n", ""), "OnFailure"),
]


# (name, edit of infra/azure/createUiDefinition.json, text expected in the findings)
BROKEN_UI = [
    ("an output the template does not take", ('"aksClusterName": "[basics(\'aksClusterName\').name]"', '"clusterName": "[basics(\'aksClusterName\').name]"'), "never asked for"),
    ("the key in a plain text box", ('"type": "Microsoft.Common.PasswordBox"', '"type": "Microsoft.Common.TextBox"'), "must come from a PasswordBox"),
]


# (name, edit of templates/azure-functions/package.py, text expected in the findings)
BROKEN_PACKAGE = [
    ("the zip built on Windows loses the run bit", ("    info.create_system = 3\n", ""), "create_system 0"),
    ("the handler not executable", ("entry(\"aks-handler\", 0o755)", "entry(\"aks-handler\", 0o644)"), "not executable"),
]


# (name, edit of infra/README.md, text expected in the findings)
BROKEN_DOCS = [
    ("sam build without the architecture", (" --parameter-overrides Architecture=$arch   # rust-cargolambda", "   # rust-cargolambda"), "must pass --parameter-overrides Architecture"),
]


# (name, file, edit, text expected in the findings)
BROKEN_AZURE = [
    ("bicep syntax error", "bicep", ("param namePrefix string = 'kaf'", "param namePrefix string = = 'kaf'"), "does not parse"),
    ("parameter drift between the files", "arm", ('"partitionCount": {', '"partitions": {'), "parameters differ"),
    ("resource drift between the files", "bicep", ("resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {\n  parent: eventHub\n  name: 'kube-audit-forwarder'\n}\n", ""), "resource types differ"),
    ("key as a plain string parameter", "arm", ('"type": "securestring"', '"type": "string"'), "securestring"),
    ("key in a plaintext app setting", "bicep", ("logTypeConfig: '@Microsoft.KeyVault(SecretUri=${logTypeConfigSecret.properties.secretUri})'", "logTypeConfig: logTypeConfig"), "Key Vault reference"),
    ("public blob access", "bicep", ("allowBlobPublicAccess: false", "allowBlobPublicAccess: true"), "allowBlobPublicAccess"),
    ("both audit categories", "arm", ('"logs": [\n          {\n            "category": "[parameters(\'auditCategory\')]",\n            "enabled": true\n          }\n        ]', '"logs": [{"category": "kube-audit", "enabled": true}, {"category": "kube-audit-admin", "enabled": true}]'), "exactly one audit category"),
    ("an unbalanced ARM expression", "arm", ("take(format('kv-{0}-{1}', variables('prefix'), variables('suffix')), 24)", "take(format('kv-{0}-{1}', variables('prefix'), variables('suffix'), 24)"), "unbalanced parentheses"),
    ("an undeclared ARM variable", "arm", ("variables('hubName')]\"\n", "variables('hubNmae')]\"\n"), "not declared"),
    ("an unexplained suppression", "bicep", ("// checkov:skip=CKV_AZURE_41: The logtypeconfig", "// checkov:skip=CKV_AZURE_41:\n  // The logtypeconfig"), "has no reason"),
    ("a checkov finding not suppressed", "arm", ("skip=CKV_AZURE_213", "skip=CKV_AZURE_000"), "checkov CKV_AZURE_213"),
    # First deployment (issue "Deploy templates that survive a first real deployment").
    ("a Key Vault name past 24 characters", "arm", ("take(format('kv-{0}-{1}', variables('prefix'), variables('suffix')), 24)", "format('kv-{0}-{1}', variables('prefix'), variables('suffix'))"), "Microsoft.KeyVault/vaults: name 'kv-zzzzzzzzzzz-"),
    ("a namespace name that starts with the prefix", "arm", ("[format('ehns-{0}-{1}', variables('prefix'), variables('suffix'))]", "[format('{0}-ehns-{1}', variables('prefix'), variables('suffix'))]"), "Microsoft.EventHub/namespaces: name '111-ehns-"),
    ("telemetry sent without the app's identity", "arm", ("\"APPLICATIONINSIGHTS_AUTHENTICATION_STRING\": \"[if(parameters('enableApplicationInsights'), 'Authorization=AAD', '')]\"", "\"APPLICATIONINSIGHTS_AUTHENTICATION_STRING\": \"\""), "APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD"),
    ("the publisher role on the wrong scope", "bicep", ("  scope: appInsights\n", "  scope: logWorkspace\n"), "Monitoring Metrics Publisher"),
    ("settings applied before the vault role", "bicep", ("    secretsUserRole\n    receiverRole\n", "    receiverRole\n"), "Key Vault Secrets User role assignment"),
    ("the Key Vault reference on the site", "arm", ("\"http20Enabled\": true\n", "\"http20Enabled\": true,\n          \"appSettings\": [{\"name\": \"logTypeConfig\", \"value\": \"@Microsoft.KeyVault(SecretUri=x)\"}]\n"), "must not carry the Key Vault reference"),
    # checkov's ARM renderer once dropped every finding on resources named through toLower(): prove it still
    # sees the site and the storage account.
    ("checkov blind to the site", "arm", ('"httpsOnly": true', '"httpsOnly": false'), "checkov CKV_AZURE_14"),
    ("checkov blind to the storage account", "arm", ('"defaultToOAuthAuthentication": true,\n        "networkAcls": {\n          "bypass": "AzureServices",\n          "defaultAction": "Allow"\n        }', '"defaultToOAuthAuthentication": true'), "checkov CKV_AZURE_36"),
    ("a vault without purge protection", "bicep", ("    enablePurgeProtection: true\n", "    enablePurgeProtection: false\n"), "enablePurgeProtection"),
    ("the hub in the resource group's region", "bicep", ("  name: namespaceName\n  location: aks.location\n", "  name: namespaceName\n  location: location\n"), "must take the cluster's location"),
    ("the hub in the resource group's region (ARM)", "arm", ("\"[reference(resourceId('Microsoft.ContainerService/managedClusters', parameters('aksClusterName')), '2024-05-01', 'full').location]\"", "\"[parameters('location')]\""), "must take the cluster's location"),
    ("a hard-coded cloud suffix", "bicep", ("replace(replace(eventHubNamespace.properties.serviceBusEndpoint, 'https://', ''), ':443/', '')", "'${eventHubNamespace.name}.servicebus.windows.net'"), "hard-coded public-cloud suffix servicebus.windows.net"),
]


# (name, edit of templates/drain/deployment.yaml, text expected in the findings)
BROKEN_DRAIN = [
    ("SIGKILL before the grace period ends", ('name: DRAIN_GRACE_SECS\n              value: "20"', 'name: DRAIN_GRACE_SECS\n              value: "28"'), "terminationGracePeriodSeconds"),
    ("probe on the wrong path", ("path: /healthz\n              port: metrics\n            initialDelaySeconds", "path: /\n              port: metrics\n            initialDelaySeconds"), "livenessProbe must GET /healthz"),
    ("probe on the wrong port", ('value: "0.0.0.0:8080"', 'value: "0.0.0.0:9090"'), "readinessProbe must GET /healthz on port 9090"),
    ("no workload identity label", ('        azure.workload.identity/use: "true"\n', ""), "azure.workload.identity/use"),
    ("key in clear", ("              valueFrom:\n                secretKeyRef:\n                  name: kube-audit-forwarder\n                  key: logtypeconfig\n", "              value: eyJhcGlLZXkiOiJ4In0=\n"), "must come from a Secret"),
    ("no memory request", ("              memory: 256Mi\n", ""), "resources.requests.memory"),
    ("not drain mode", ('args: ["drain"]', "args: []"), "args: [drain]"),
    ("a grace period that is not a number", ('name: DRAIN_GRACE_SECS\n              value: "20"', 'name: DRAIN_GRACE_SECS\n              value: "20s"'), "whole seconds"),
    ("an unexplained suppression", ("checkov.io/skip2: CKV_K8S_43=", "checkov.io/skip2: CKV_K8S_43=\n    checkov.io/why: "), "has no reason"),
    ("a checkov finding not suppressed", ("checkov.io/skip1: CKV_K8S_35=", "checkov.io/skip1: CKV_K8S_00="), "checkov CKV_K8S_35"),
]


def main() -> int:
    passed, failed = 0, 0

    def report(ok: bool, line: str) -> None:
        nonlocal passed, failed
        passed, failed = passed + ok, failed + (not ok)
        print(("ok   " if ok else "FAIL ") + line)

    def prove(label: str, text: str, check, variants, clean: str) -> None:
        """`check` passes on the real `text` (a file's contents) and rejects each broken variant of it."""
        findings = check(text)
        report(not findings, f"{label}: " + (clean if not findings else "; ".join(findings)))
        for name, (old, new), expected in variants:
            if old not in text:
                report(False, f"broken variant '{name}': the edit no longer applies to {label}")
                continue
            findings = check(text.replace(old, new, 1))
            caught = any(expected in f for f in findings)
            report(caught, f"broken variant '{name}' is rejected" + ("" if caught else f" (findings: {json.dumps(findings)})"))

    findings = check_template(SAM)
    report(not findings, f"{SAM.relative_to(ROOT.parent)}: " + ("clean" if not findings else "; ".join(findings)))

    prove("infra/README.md", (ROOT / "README.md").read_text(), lambda t: sam_command_findings(t, SAM.read_text()),
          BROKEN_DOCS, "sam build and sam deploy pass the same Architecture")

    good = SAM.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        for name, (old, new), expected in BROKEN_SAM:
            if old not in good:
                report(False, f"broken variant '{name}': the edit no longer applies to the template")
                continue
            # Keep the file next to the original so relative CodeUri paths still resolve.
            path = pathlib.Path(tmp) / "template.yaml"
            path.write_text(good.replace(old, new, 1))
            findings = check_template(path, needs_checkov(expected))
            caught = any(expected in f for f in findings)
            report(caught, f"broken variant '{name}' is rejected" + ("" if caught else f" (findings: {json.dumps(findings)})"))

    prove("infra/azure/createUiDefinition.json", UI.read_text(), lambda t: ui_findings(t, ARM.read_text()),
          BROKEN_UI, "fills azuredeploy.json's parameters")

    findings = check_azure(BICEP, ARM)
    report(not findings, "infra/azure/main.bicep + azuredeploy.json: " + ("clean" if not findings else "; ".join(findings)))
    good_bicep, good_arm = BICEP.read_text(), ARM.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        for name, target, (old, new), expected in BROKEN_AZURE:
            source = good_bicep if target == "bicep" else good_arm
            if old not in source:
                report(False, f"broken variant '{name}': the edit no longer applies to the template")
                continue
            b, a = pathlib.Path(tmp) / "main.bicep", pathlib.Path(tmp) / "azuredeploy.json"
            b.write_text(good_bicep.replace(old, new, 1) if target == "bicep" else good_bicep)
            a.write_text(good_arm.replace(old, new, 1) if target == "arm" else good_arm)
            findings = check_azure(b, a, needs_checkov(expected))
            caught = any(expected in f for f in findings)
            report(caught, f"broken variant '{name}' is rejected" + ("" if caught else f" (findings: {json.dumps(findings)})"))

    prove("templates/azure-functions/package.py", PACKAGE.read_text(), package_findings, BROKEN_PACKAGE,
          "aks-handler stays executable, built on any OS")

    findings = check_drain(DRAIN, DOCKERFILE)
    report(not findings, "templates/drain (deployment.yaml, Dockerfile): " + ("clean" if not findings else "; ".join(findings)))
    good_drain = DRAIN.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        for name, (old, new), expected in BROKEN_DRAIN:
            if old not in good_drain:
                report(False, f"broken variant '{name}': the edit no longer applies to the template")
                continue
            path = pathlib.Path(tmp) / "deployment.yaml"
            path.write_text(good_drain.replace(old, new, 1))
            findings = drain_findings(path.read_text())
            if needs_checkov(expected):
                findings += checkov(path, "kubernetes")
            caught = any(expected in f for f in findings)
            report(caught, f"broken variant '{name}' is rejected" + ("" if caught else f" (findings: {json.dumps(findings)})"))

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
