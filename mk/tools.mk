# Deploy-time tools: AWS SAM CLI and checkov, each in its own venv under .tools/.
#
# aws-sam-cli pins boto3 exactly and checkov pins an older one: installed together (or into the
# project's .venv) they break each other, so each gets a venv of its own. Included from the
# top-level Makefile, which defines PYTHON (the interpreter that makes venvs), PY (.venv's) and
# PIP_LOCK (the pip every venv installs first).
#
#   make tools          create .tools/sam and .tools/checkov (a second run does nothing)
#   make build          sam build (makefile builds: no Docker, no python3.12 needed)
#   make lint-template  cfn-lint, sam validate --lint and checkov on template.yaml, and on SAM's
#                       translation of it for parameter variants (what CloudFormation deploys)
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

# What the scanners read (tests/template/variants.py writes it):
# - template.yaml itself, and two copies with other parameter defaults (all-on-s3 and all-on-sm,
#   each store; variants.py changes only those Default lines), for checkov's checks of
#   the SAM resources: checkov decides resource Conditions with the defaults.
# - What ships: for each variant of variants.VARIANTS (the defaults, all-on per store and five
#   mixed ones, so that every pair of parameter values and every branch of every Condition is
#   scanned, the Powertools layer's regions included), SAM's translation
#   (NAME.translated.json: what CloudFormation receives; cfn-lint follows its Conditions
#   itself) and the template CloudFormation deploys from it (NAME.deployed.json: the resources
#   whose Condition holds, every Fn::If decided; checkov reads this one, as it decides no Fn::If
#   and skips the IAM statements wrapped in one). The translation copies each function's
#   Metadata to the role, permissions and URL SAM makes of it, so the template's checkov skips
#   reach them: no check is skipped on this command line.
# --skip-download: no network calls (checkov otherwise fetches guideline links).
CHECKOV_ARGS := --framework cloudformation --quiet --compact --skip-download
CHECKOV_DIR := $(TOOLS_DIR)/checkov-variants
CHECKOV_SAM_VARIANTS := all-on-s3 all-on-sm

# cfn-lint runs here only (CI runs `make lint`); the template tests do not run it again.
lint-template: $(SAM_STAMP) $(CHECKOV_STAMP) $(STAMP)
	$(dir $(PY))cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(SAM) validate --lint --template-file template.yaml --region $(SAM_LINT_REGION)
	rm -rf $(CHECKOV_DIR)
	$(PY) -m tests.template.variants --scan $(CHECKOV_DIR) > /dev/null
	$(CHECKOV) -f template.yaml $(foreach v,$(CHECKOV_SAM_VARIANTS),-f $(CHECKOV_DIR)/$(v).yaml) \
		$(CHECKOV_ARGS)
	$(dir $(PY))cfn-lint $(CHECKOV_DIR)/*.translated.json
	$(CHECKOV) $$(printf -- '-f %s ' $(CHECKOV_DIR)/*.deployed.json) $(CHECKOV_ARGS)

layer-size: build
	@$(SAM_VENV)/bin/python -c 'import os, shutil, sys, tempfile; \
		d = tempfile.mkdtemp(); z = shutil.make_archive(os.path.join(d, "layer"), "zip", sys.argv[1]); \
		n = os.path.getsize(z); shutil.rmtree(d); \
		print(f"SchwabTokensLayer: {n} bytes zipped ({n / 2**20:.2f} MiB)")' \
		$(SAM_BUILD_DIR)/SchwabTokensLayer
