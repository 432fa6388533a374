# vrstack: two commands on a fresh Debian 12 machine (as root):
#   make lab    build the local two-rack lab and deploy site.yml on it
#   make test   run every quality gate (unit, lint, sanity, datapath, lab scenario)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR ?= 0
LAB_INVENTORY := inventories/lab
# The lab's playbooks run on Mitogen's strategy (requirements/dev.txt): a no-op rerun of
# site.yml takes half the time of Ansible's own (docs/performance.md). VRSTACK_MITOGEN=0
# runs them on Ansible's linear strategy. The path is looked up once bootstrap has run.
VRSTACK_MITOGEN ?= 1
LAB_TARGETS := lab lab-api-test molecule-lab molecule-lab-sdn test-multirack
ifeq ($(VRSTACK_MITOGEN),1)
$(LAB_TARGETS): export ANSIBLE_STRATEGY = mitogen_linear
$(LAB_TARGETS): export ANSIBLE_STRATEGY_PLUGINS = $(wildcard $(VENV)/lib/python3*/site-packages/ansible_mitogen/plugins/strategy)
endif
# The roles read facts as ansible_facts.*; not copying every fact into an ansible_* variable
# spares Ansible a clean-up of each host's facts per task (about 15% of a no-op rerun).
$(LAB_TARGETS): export ANSIBLE_INJECT_FACT_VARS = False

.PHONY: bootstrap lab lab-api-test molecule-lab-sdn freebsd-check lab-down lab-status test unit lint sanity build-check molecule-lab datapath-test sdn-test openstack-test guest-test molecule-kernel requirements clean

bootstrap:
	@./scripts/bootstrap.sh

# The cloud, then the smoke test on it (servers on both computes, traffic across racks).
lab: bootstrap
	python tools/lab.py up --inventory $(LAB_INVENTORY)
	python tools/lab.py hold -- ansible-playbook -i $(LAB_INVENTORY) playbooks/site.yml
	image=$$(python tools/guest_image.py) && python tools/lab.py hold -- \
	    ansible-playbook -i $(LAB_INVENTORY) playbooks/smoke.yml -e smoke_image_file=$$image
	python tools/lab.py summary --inventory $(LAB_INVENTORY)

# Tempest-style API scenarios with the openstack CLI against the deployed lab (make lab).
lab-api-test: bootstrap
	python tools/lab.py hold -- ./scripts/run-pytest.sh -rA tests/lab

lab-down: bootstrap
	python tools/lab.py down --inventory $(LAB_INVENTORY)

lab-status: bootstrap
	python tools/lab.py summary --inventory $(LAB_INVENTORY)

GATES := unit lint sanity build-check freebsd-check datapath-test sdn-test openstack-test guest-test
# A second lane beside them, one after the other: molecule-kernel (qemu TCG computes booting
# Debian's kernel, ~15 min warm), then molecule-lab (the cloud, ~45 min), whose deploy
# overlaps the lighter gates and whose lab tests mostly run after them.
GATES_BESIDE := molecule-kernel molecule-lab

# Every gate runs even when an earlier one failed; the summary gives each gate's time and
# the end of each failed gate's log (scripts/gates.sh; logs in tests/output/gates/).
test: bootstrap
	@./scripts/gates.sh $(foreach g,$(GATES_BESIDE),--beside $(g)) $(GATES)

unit:
	./scripts/run-pytest.sh tests/unit

lint:
	ruff check .
	ruff format --check .
	ansible-lint --profile production

sanity:
	./scripts/sanity.sh

build-check:
	./scripts/build-check.sh

# FreeBSD hosts without a FreeBSD machine: KLD compile check, cross-builds, every role
# played for inventories/example-freebsd against golden files (docs/freebsd.md).
freebsd-check:
	./scripts/freebsd-check.sh

datapath-test:
	@if [ -f files/vrouter-src/Makefile ]; then $(MAKE) -C files/vrouter-src test; else echo "datapath: no source yet"; fi

sdn-test:
	./scripts/run-pytest.sh files/sdn-src/tests

# The Neutron ML2 driver and the os-vif plugin, in the OpenStack venv the deploy uses
# (Neutron, os-vif and Nova are not in the dev venv; make sdn-test skips that directory).
openstack-test:
	venv=$$(./scripts/openstack-venv.sh) && $$venv/bin/python -m pytest -q -p no:cacheprovider files/sdn-src/tests/openstack; \
	rc=$$?; [ $$rc -ne 5 ] || { echo "openstack-test: no tests collected" >&2; exit 1; }; exit $$rc

# The Nova guest image: built from Debian packages, booted under qemu, DHCP/ping/HTTP checked.
guest-test:
	./scripts/run-pytest.sh tests/integration/guest

# The whole cloud on the lab: site.yml with OpenStack, its idempotence, verify, the smoke
# play and the API scenarios (tests/lab). `hold` keeps other lab.py callers out meanwhile.
molecule-lab:
	export VRSTACK_GUEST_IMAGE=$$(python tools/guest_image.py) VRSTACK_LAB_SKIP_TAGS=none && \
	    python tools/lab.py hold -- molecule test -s lab

# The same scenario without the OpenStack stage (the SDN alone, a few minutes faster).
molecule-lab-sdn:
	VRSTACK_LAB_SKIP_TAGS=openstack python tools/lab.py hold -- molecule test -s lab

# The multirack lab beside the `lab` one (docs/lab.md): create, converge, idempotence,
# verify (BIRD's sessions with both control nodes), destroy. SDN stages only until the
# HA roles land (VRSTACK_LAB_SKIP_TAGS=none runs OpenStack too).
.PHONY: test-multirack
test-multirack:
	VRSTACK_LAB_SKIP_TAGS=$${VRSTACK_LAB_SKIP_TAGS:-openstack} \
	    python tools/lab.py hold --lab multirack -- molecule test -s multirack

molecule-kernel:
	@if [ -f molecule/kernel/molecule.yml ]; then molecule test -s kernel; else echo "kernel scenario: not yet"; fi

requirements:
	python3 -m venv /tmp/vrstack-req && /tmp/vrstack-req/bin/pip install -q -r requirements/dev.in
	{ echo "# Pinned from requirements/dev.in on Python 3.11 (make requirements)."; \
	  /tmp/vrstack-req/bin/pip freeze; } > requirements/dev.txt
	rm -rf /tmp/vrstack-req

clean:
	rm -rf .collections .pytest_cache .ruff_cache tests/output *.tar.gz
