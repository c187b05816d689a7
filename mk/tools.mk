# Deploy-time tools: AWS SAM CLI and checkov, each in its own venv under .tools/.
#
# aws-sam-cli pins boto3 exactly and checkov pins an older one: installed together (or into the
# project's .venv) they break each other, so each gets a venv of its own. Included from the
# top-level Makefile, which defines PYTHON (the interpreter that makes venvs), PY (.venv's) and
# PIP_LOCK (the pip every venv installs first).
#
#   make tools          create .tools/sam and .tools/checkov (a second run does nothing)
#   make build          sam build (makefile builds: no Docker, no python3.12 needed)
#   make lint-template  cfn-lint, sam validate --lint and checkov on template.yaml
#   make layer-size     the size of the built layer, zipped as Lambda stores it

TOOLS_DIR := .tools
SAM_VENV := $(TOOLS_DIR)/sam
CHECKOV_VENV := $(TOOLS_DIR)/checkov
SAM := $(SAM_VENV)/bin/sam
CHECKOV := $(CHECKOV_VENV)/bin/checkov
# Pinned in requirements/sam.in and requirements/checkov.in, so that a new checkov rule or SAM
# release never changes a CI result by itself, and installed from their hash-locked closures
# (`make lock` writes requirements/*.lock): a venv is made anew when its lock changes.
SAM_LOCK := requirements/sam.lock
CHECKOV_LOCK := requirements/checkov.lock
SAM_STAMP := $(SAM_VENV)/.installed
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
SAM_BUILD_DIR ?= .aws-sam/build
# `sam validate` needs a region even to lint; any region works, nothing is called.
SAM_LINT_REGION ?= us-east-1

.PHONY: tools build lint-template layer-size

tools: $(SAM_STAMP) $(CHECKOV_STAMP)

# -qq: errors only (pip's warnings about this machine's extra package folders are noise).
$(SAM_STAMP): $(PIP_LOCK) $(SAM_LOCK)
	rm -rf $(SAM_VENV)
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -qq --require-hashes -r $(PIP_LOCK)
	$(SAM_VENV)/bin/python -m pip install -qq --require-hashes -r $(SAM_LOCK)
	SAM_CLI_TELEMETRY=0 $(SAM) --version
	@touch $@

$(CHECKOV_STAMP): $(PIP_LOCK) $(CHECKOV_LOCK)
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -qq --require-hashes -r $(PIP_LOCK)
	$(CHECKOV_VENV)/bin/python -m pip install -qq --require-hashes -r $(CHECKOV_LOCK)
	$(CHECKOV) --version
	@touch $@

# The makefile builders (layers/*/Makefile, functions/Makefile) install the hash-locked
# requirements (requirements.lock) with this pip, for linux/arm64 and CPython 3.12, whatever
# Python runs it.
build: $(SAM_STAMP)
	SAM_CLI_TELEMETRY=0 PIP="$(CURDIR)/$(SAM_VENV)/bin/python -m pip" \
		$(SAM) build --template-file template.yaml --build-dir $(SAM_BUILD_DIR)

# checkov resolves Conditions with the parameters' defaults, so one run sees one branch of each.
# The variants are copies of the template with other defaults (tests/template/variants.py changes
# only those Default lines, and fails on a parameter or value that does not exist): together
# with the template itself they scan both branches of every condition: the S3 and Secrets
# Manager stores, both encryption modes and credential stores, the hosted login, the detailed
# metrics, the e-mail subscription and the reserved concurrency. (The Powertools layer's
# partition conditions read pseudo parameters, which no Default can change.)
# --skip-download: no network calls (checkov otherwise fetches guideline links).
CHECKOV_ARGS := --framework cloudformation --quiet --compact --skip-download
CHECKOV_DIR := $(TOOLS_DIR)/checkov-variants
CHECKOV_ALL_ON := Encryption=CustomerManagedKey CredentialsStore=SecretsManager \
	HostedLogin=Enabled DetailedMetrics=Enabled AlarmEmail=alarms@example.com \
	ReservedConcurrency=Enabled
CHECKOV_VARIANTS := all-on-s3 all-on-secretsmanager
CHECKOV_VARIANT_all-on-s3 := $(CHECKOV_ALL_ON)
CHECKOV_VARIANT_all-on-secretsmanager := StoreType=SecretsManager $(CHECKOV_ALL_ON)

# cfn-lint runs here only (CI runs `make lint`); the template tests do not run it again.
lint-template: $(SAM_STAMP) $(CHECKOV_STAMP) $(STAMP)
	$(dir $(PY))cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(SAM) validate --lint --template-file template.yaml --region $(SAM_LINT_REGION)
	$(CHECKOV) -f template.yaml $(CHECKOV_ARGS)
	@mkdir -p $(CHECKOV_DIR)
	$(foreach variant,$(CHECKOV_VARIANTS),$(PY) -m tests.template.variants \
		$(CHECKOV_DIR)/$(variant).yaml $(CHECKOV_VARIANT_$(variant)) && \
		$(CHECKOV) -f $(CHECKOV_DIR)/$(variant).yaml $(CHECKOV_ARGS) && ) true

layer-size: build
	@$(SAM_VENV)/bin/python -c 'import os, shutil, sys, tempfile; \
		d = tempfile.mkdtemp(); z = shutil.make_archive(os.path.join(d, "layer"), "zip", sys.argv[1]); \
		n = os.path.getsize(z); shutil.rmtree(d); \
		print(f"SchwabTokensLayer: {n} bytes zipped ({n / 2**20:.2f} MiB)")' \
		$(SAM_BUILD_DIR)/SchwabTokensLayer
