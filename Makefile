# Two commands set everything up on a fresh machine:  make demo  and  make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# Every package at the version in constraints.txt: the environment is the same on every machine and
# every day, whatever the package index has published since.
LOCK := -c constraints.txt

.PHONY: demo test install lock clean

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	@echo "minecli: setting up $(VENV): torch, torchaudio, the model libraries and the test tools"
	@echo "minecli: the first time this downloads about 3 GB and takes 1-10 minutes (5.3 GB on disk)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --progress-bar on $(LOCK) pip
	$(PIP) install --progress-bar on $(LOCK) -e '.[test]'
	touch $@
	@echo "minecli: $(VENV) is ready"

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/minecli run configs/demo.yaml

test: $(VENV)/.installed
	$(PY) -m pytest -q

# Re-resolve the newest releases that setup.cfg allows and write them to constraints.txt; run the
# tests on the result before committing it.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[test]'
	{ sed -n '1,2p' constraints.txt; .lock-venv/bin/python -m pip freeze --all --exclude-editable \
	  | grep -v '^minecli'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .lock-venv build *.egg-info runs .cache
