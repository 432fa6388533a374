#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Documentation only: the action plugin plugins/action/checks.py does the work.
from __future__ import annotations

DOCUMENTATION = r"""
module: checks
short_description: Several checks in one task, failing with the message of each that fails
version_added: 0.1.0
description:
  - Replaces a row of M(ansible.builtin.assert) tasks with one task, so a rerun pays one
    task per host instead of one per check. Runs on the deploy host; it makes no remote call.
  - Each check's O(checks[].ok) is templated by Ansible before the action runs, so write it
    as a template (C("{{ expression }}")). A value that is not a bool (a forgotten
    C({{ }}), a string C("yes")) is an error naming the check's index, never taken as true.
  - Unlike M(ansible.builtin.assert), every check is evaluated, and the task fails listing
    the message of B(every) failed check, not only the first.
  - All checks and messages are templated together, so an expression that needs an earlier
    check to hold must guard itself (C("{{ x is defined and x.port > 0 }}")), and a message
    must template even when its check passes.
options:
  checks:
    description: The checks, in the order their messages are reported.
    type: list
    elements: dict
    required: true
    suboptions:
      ok:
        description: The check's result, a bool from a template.
        type: bool
        required: true
      msg:
        description: The message reported when O(checks[].ok) is false.
        type: str
        required: true
  success_msg:
    description: The message returned when every check holds.
    type: str
    default: All checks passed
  quiet:
    description:
      - Whether to leave the result out of the output when every check holds (as
        M(ansible.builtin.assert)'s C(quiet)). V(false) shows O(success_msg) without C(-v),
        for a note the operator should see.
    type: bool
    default: true
extends_documentation_fragment:
  - vrstack.cloud.read_only
attributes:
  platform:
    description: Any host; the action runs on the deploy host.
author:
  - vrstack developers (@vrstack)
"""

EXAMPLES = r"""
- name: Check the host's OS and memory
  vrstack.cloud.checks:
    checks:
      - ok: "{{ ansible_facts.os_family in ['Debian', 'FreeBSD'] }}"
        msg: "{{ inventory_hostname }}: Debian 12 or FreeBSD 14 is needed, found {{ ansible_facts.distribution }}"
      - ok: "{{ ansible_facts.memtotal_mb >= 4096 }}"
        msg: "{{ inventory_hostname }}: at least 4096 MB of memory is needed"
"""

RETURN = r"""
failed_checks:
  description: The message of every check that failed, in order; empty when all hold.
  returned: always
  type: list
  elements: str
msg:
  description: The failed checks' messages, one per line, or O(success_msg).
  returned: always
  type: str
"""
