# Development tasks of idserver.
#
#   make run    set up a development instance in ./var and run it in the
#               foreground (https://127.0.0.1:8443/)
#   make test   lint, type-check and run the test suite
#
# Both create .venv with the system python3 on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEV_DIR := var
TRIAL_ARGS ?=

# Services and tools the tests start themselves (slapd, redis, a headless
# browser), and the headers python-ldap compiles against.
DEBIAN_PACKAGES := slapd ldap-utils redis-server chromium libldap2-dev libsasl2-dev

# editable_mode=compat puts the source tree on sys.path, which is how
# twistd finds twisted/plugins/idserver_plugin.py in it.
PIP_INSTALL := $(BIN)/pip install --config-settings editable_mode=compat -e

.PHONY: run test lint typecheck debian-packages clean

run: $(VENV)/.installed
	$(BIN)/python -m idserver.devinstance $(DEV_DIR)
	exec $(BIN)/twistd -n --pidfile=$(DEV_DIR)/twistd.pid idserver --config $(DEV_DIR)/idserver.toml

test: $(VENV)/.installed-test lint typecheck
	$(BIN)/python .ci/summarize.py $(BIN)/python -m twisted.trial $(TRIAL_ARGS) tests

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) .
	touch $@

# The Debian packages come first: pip builds python-ldap from source.
$(VENV)/.installed-test: setup.cfg pyproject.toml | $(BIN)/python debian-packages
	$(PIP_INSTALL) '.[test]'
	touch $@ $(VENV)/.installed

# Installs the missing packages when run as root (as CI does); otherwise
# names them and goes on.
debian-packages:
	@missing=""; \
	for package in $(DEBIAN_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$package 2>/dev/null \
	        | grep -q "install ok installed" || missing="$$missing $$package"; \
	done; \
	if [ -z "$$missing" ]; then \
	    exit 0; \
	elif [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian packages:$$missing"; \
	    apt-get update && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	else \
	    echo "Missing Debian packages (install them as root):$$missing" >&2; \
	fi

clean:
	rm -rf $(VENV) _trial_temp build *.egg-info .mypy_cache .ruff_cache
	rm -f twisted/plugins/dropin.cache
