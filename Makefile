# OpenEDS-Seg. `make demo` and `make test` create the virtual environment themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?= data/synthetic
JOBS ?= 2

.PHONY: setup test test-fast demo pretrain student bench bench-segment bench-student lint format contact-sheet clean

setup: $(STAMP)

# One .venv for every target: requirements-dev.txt is requirements.txt (what the code runs on)
# plus pytest, ruff and what only the tests import. Rebuilt only when either file changes, so a
# second `make test` or `make demo` starts at once.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# Everything but the end-to-end tests that run the real scripts (marked slow).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

demo: $(STAMP)
	$(PY) -m scripts.demo --out demo

# The default model, trained from freshly rendered eyes of the real-camera styles (scripts/pretrain.py):
# pretrain/weights/default.pt + default.json; copy them to weights/ to ship them (when they score better).
pretrain: $(STAMP)
	$(PY) -m scripts.pretrain --out pretrain

# Teacher ensemble (make demo's, if there) -> distilled student -> labels-only student -> test
# mIoU of all three -> export.py -> segment.py on a synthetic video (scripts/student.py).
student: $(STAMP)
	$(PY) -m scripts.student --out student

# Student latency: parameters, ms/frame with onnxruntime and PyTorch, native and AVX2-limited.
bench-student: $(STAMP)
	$(PY) -m bench.student

# Natively, then as on an AVX2 CPU (tools/avx2.py, run as bench.avx2: PyTorch's caps + AVX-512 hidden from CPUID; BENCHMARKS.md, "Every CPU").
bench: $(STAMP)
	$(PY) -m bench.run_all
	$(PY) -m bench.avx2 $(PY) -m bench.run_all --quick

# segment.py's throughput (BENCHMARKS.md, "segment.py"); STUDENT=<student checkpoint> adds its row.
bench-segment: $(STAMP)
	$(PY) -m bench.segment $(if $(STUDENT),--student $(STUDENT))
	$(PY) -m bench.avx2 $(PY) -m bench.segment $(if $(STUDENT),--student $(STUDENT))

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

contact-sheet: $(STAMP)
	$(PY) -m viz.contact_sheet --out docs/synthetic.png

# Not runs/: it holds users' trained models.
clean:
	rm -rf demo student preds pseudo report .pytest_cache
