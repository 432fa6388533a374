#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: vrouter_agent_info
short_description: Read a vrouter agent's state from its introspect API
version_added: 0.1.0
description:
  - Reads the introspect API of the vrouter agent (C(vrstack-agent)) on a compute, by
    default on its loopback listener, and returns its control-node sessions, config
    sync state, interfaces, VRFs, the routes of chosen VRFs, flows and the datapath
    mode with its table usage.
  - Fails, saying where to look, when the agent does not answer.
  - Never changes anything.
options:
  url:
    description: The agent's introspect URL (its C(listen) address).
    type: str
    default: http://127.0.0.1:8085
  gather:
    description:
      - What to read. V(routes) is added when O(instances) is given.
    type: list
    elements: str
    choices: [sessions, config, interfaces, vrfs, routes, flows, datapath]
    default: [sessions, config, interfaces, vrfs, datapath]
  instances:
    description:
      - Routing instances (C(project:network:instance)) whose routes to return; V(all) for
        every instance with a local VRF.
    type: list
    elements: str
    default: []
  flow_vrf:
    description: Only flows of this VRF, given as its index or its routing instance's name.
    type: str
    default: ""
  flow_ip:
    description: Only flows with this address as source or destination.
    type: str
    default: ""
  flow_port:
    description: Only flows with this port as source or destination port.
    type: int
  flow_limit:
    description: At most this many flows.
    type: int
    default: 1000
  timeout:
    description: Seconds to wait for each request.
    type: int
    default: 10
extends_documentation_fragment:
  - vrstack.cloud.read_only
attributes:
  platform:
    description: A compute running C(vrstack-agent).
notes:
  - The agent listens on loopback by default, so the module runs on the compute itself.
author:
  - vrstack developers (@vrstack)
"""

EXAMPLES = r"""
- name: Read the agent's sessions and interfaces
  vrstack.cloud.vrouter_agent_info:
  register: agent

- name: Every route of every local VRF
  vrstack.cloud.vrouter_agent_info:
    gather: [sessions]
    instances: [all]
  register: agent_routes

- name: The flows of one VM address on port 80
  vrstack.cloud.vrouter_agent_info:
    gather: [flows]
    flow_vrf: demo:blue:blue
    flow_ip: 198.18.10.3
    flow_port: 80
"""

RETURN = r"""
name:
  description: The agent's name (its virtual-router object).
  returned: always
  type: str
  sample: lab-cmp1
fabric_address:
  description: The compute's tunnel endpoint.
  returned: always
  type: str
  sample: 198.18.1.17
headless:
  description: True when no control-node session is up (the datapath keeps its last state).
  returned: always
  type: bool
counters:
  description: The agent's counters (syncs, datapath adds/deletes/errors, pkt0 and flow counters).
  returned: always
  type: dict
sessions:
  description: One per control node.
  returned: when V(sessions) is gathered
  type: list
  elements: dict
  contains:
    address:
      description: host:port of the control node.
      type: str
      sample: "198.18.1.16:5269"
    state:
      description: Idle, Connecting or Established.
      type: str
    established:
      description: Whether the session is up.
      type: bool
    flaps:
      description: Times the session went down after being up.
      type: int
    last_error:
      description: Why the last attempt failed.
      type: str
sessions_established:
  description: How many sessions are Established.
  returned: when V(sessions) is gathered
  type: int
  sample: 2
config:
  description: Config sync state.
  returned: when V(config) is gathered
  type: dict
  contains:
    revision:
      description: The newest config revision the agent received.
      type: int
    objects:
      description: Config objects held.
      type: int
    synced:
      description: Every established session has that revision.
      type: bool
    sessions_behind:
      description: Established sessions with an older revision.
      type: list
      elements: str
interfaces:
  description: The local ports.
  returned: when V(interfaces) is gathered
  type: list
  elements: dict
  contains:
    id:
      description: The port's id.
      type: str
    vm:
      description: The VM's id when the agent knows it.
      type: str
    network:
      description: The port's network.
      type: str
    instance:
      description: Its routing instance.
      type: str
    ips:
      description: Its addresses.
      type: list
      elements: str
    mac:
      description: Its MAC.
      type: str
    label:
      description: Its MPLS label.
      type: int
    vif:
      description: Its vif index.
      type: int
    vrf:
      description: Its VRF index.
      type: int
    state:
      description: V(active) when its vif is programmed in the datapath, else V(pending).
      type: str
    status:
      description: V(up) when attached to its tap and programmed (what the agent reports), else V(down).
      type: str
    detail:
      description: Why the port is down.
      type: str
vrfs:
  description: Local VRFs (instance, index, VNI, ports, remote route count).
  returned: when V(vrfs) is gathered
  type: list
  elements: dict
routes:
  description: Routes per routing instance, each with its prefix, source (local or control) and nexthops.
  returned: when V(routes) is gathered or O(instances) is given
  type: dict
  sample: {"demo:red:red": [{"prefix": "198.18.10.4/32", "source": "control",
           "nexthops": [{"address": "198.18.2.17", "label": 17, "vni": 4096, "encap": ["MPLSoUDP"]}]}]}
flows:
  description: >-
    Flows from the datapath's flow table (index, VRF, source, destination, protocol, action,
    reverse, dvrf (the VRF it is routed in after its action; null unless translated), packets, bytes).
  returned: when V(flows) is gathered
  type: list
  elements: dict
datapath:
  description: The datapath mode (V(kernel) or V(user)), its target, and per table C(used) and C(size) (null when unknown).
  returned: when V(datapath) is gathered
  type: dict
  sample: {"mode": "user", "target": "/run/vrouter/control.sock", "connected": true,
           "tables": {"vifs": {"used": 4, "size": 256}, "routes": {"used": 6, "size": null}}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vrstack.cloud.plugins.module_utils.runner import finish
from ansible_collections.vrstack.cloud.plugins.module_utils.vrouter_agent import (
    DEFAULT_SUBSETS,
    SUBSETS,
    AgentError,
    open_url_getter,
    read,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "default": "http://127.0.0.1:8085"},
            "gather": {
                "type": "list",
                "elements": "str",
                "choices": list(SUBSETS),
                "default": list(DEFAULT_SUBSETS),
            },
            "instances": {"type": "list", "elements": "str", "default": []},
            "flow_vrf": {"type": "str", "default": ""},
            "flow_ip": {"type": "str", "default": ""},
            "flow_port": {"type": "int"},
            "flow_limit": {"type": "int", "default": 1000},
            "timeout": {"type": "int", "default": 10},
        },
        supports_check_mode=True,
    )
    p = module.params
    finish(
        module,
        "vrouter_agent_info",
        lambda: read(
            open_url_getter(p["url"], p["timeout"]),
            p["gather"],
            instances=p["instances"],
            flow_vrf=p["flow_vrf"],
            flow_ip=p["flow_ip"],
            flow_port=p["flow_port"],
            flow_limit=p["flow_limit"],
        ),
        AgentError,
        fail_keys={"status": "status"},
        read_only=True,
    )


if __name__ == "__main__":
    main()
