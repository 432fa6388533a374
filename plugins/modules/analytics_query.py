#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: analytics_query
short_description: Query flows, logs, status or counters in the vrstack analytics API
version_added: 0.1.0
description:
  - Sends a query to the query API of C(vrstack-collector) (C(POST /query)) and returns
    the rows, following the paging cursor up to O(max_pages) pages.
  - A query the API refuses fails the task naming the bad part (for example
    C(where[0].value)).
  - Never changes anything.
options:
  url:
    description: The analytics API's base URL.
    type: str
    required: true
  token:
    description: A reader or admin token of the analytics API; empty when it runs without auth.
    type: str
    default: ""
  table:
    description: What to query.
    type: str
    required: true
    choices: [flows, logs, status, counters]
  select:
    description: Fields and aggregates (C(count()), C(sum(bytes)), C(bucket(end,60)), ...).
    type: list
    elements: str
  where:
    description: Conditions, all of which must hold, each C({field, op, value}).
    type: list
    elements: dict
  since:
    description: Start of the time range (epoch seconds, RFC 3339, V(now) or relative like V(-1h)).
    type: str
  until:
    description: End of the time range.
    type: str
  group_by:
    description: Fields or time buckets to group by.
    type: list
    elements: str
  sort:
    description: Field names, or C({field, order}) with order V(asc) or V(desc).
    type: list
    elements: raw
  limit:
    description: Rows per page (1 to 10000).
    type: int
  max_pages:
    description: Follow the cursor for at most this many pages.
    type: int
    default: 1
  timeout:
    description: Seconds to wait for each page.
    type: int
    default: 30
extends_documentation_fragment:
  - vrstack.cloud.read_only
  - vrstack.cloud.api_tls
attributes:
  platform:
    description: Any host that reaches the analytics API.
author:
  - vrstack developers (@vrstack)
"""

EXAMPLES = r"""
- name: Top talkers of the last hour
  vrstack.cloud.analytics_query:
    url: https://198.18.1.16:8081
    ca_path: /etc/vrstack/pki/ca.crt
    token: "{{ analytics_reader_token }}"
    table: flows
    select: [src_ip, dst_ip, "sum(bytes)"]
    group_by: [src_ip, dst_ip]
    since: -1h
    sort: [{field: "sum(bytes)", order: desc}]
    limit: 10
  register: top

- name: Errors logged today on lab-cmp1
  vrstack.cloud.analytics_query:
    url: https://198.18.1.16:8081
    ca_path: /etc/vrstack/pki/ca.crt
    table: logs
    where:
      - {field: source, value: lab-cmp1}
      - {field: level, value: error}
    since: -1d
    max_pages: 5
"""

RETURN = r"""
items:
  description: The rows, each a dict from the selected labels to values.
  returned: always
  type: list
  elements: dict
  sample: [{"src_ip": "198.18.10.3", "dst_ip": "198.18.20.4", "sum(bytes)": 152340}]
count:
  description: How many rows were returned.
  returned: always
  type: int
next:
  description: The cursor of the following page, null when there is none.
  returned: always
  type: str
pages:
  description: Pages read.
  returned: always
  type: int
took_ms:
  description: Time the API spent on the pages, in milliseconds.
  returned: always
  type: float
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vrstack.cloud.plugins.module_utils.analytics_api import (
    QueryError,
    build,
    open_url_poster,
    run,
)
from ansible_collections.vrstack.cloud.plugins.module_utils.runner import finish


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "token": {"type": "str", "default": "", "no_log": True},
            "table": {
                "type": "str",
                "required": True,
                "choices": ["flows", "logs", "status", "counters"],
            },
            "select": {"type": "list", "elements": "str"},
            "where": {"type": "list", "elements": "dict"},
            "since": {"type": "str"},
            "until": {"type": "str"},
            "group_by": {"type": "list", "elements": "str"},
            "sort": {"type": "list", "elements": "raw"},
            "limit": {"type": "int"},
            "max_pages": {"type": "int", "default": 1},
            "timeout": {"type": "int", "default": 30},
            "validate_certs": {"type": "bool", "default": True},
            "ca_path": {"type": "path"},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not 1 <= p["max_pages"] <= 1000:
        module.fail_json(msg="analytics_query: max_pages: between 1 and 1000")
    post = open_url_poster(p["url"], p["token"], p["timeout"], p["validate_certs"], p["ca_path"])
    finish(
        module,
        "analytics_query",
        lambda: run(post, build(p), p["max_pages"]),
        QueryError,
        fail_keys={"field": "field_name", "status": "status"},
        read_only=True,
    )


if __name__ == "__main__":
    main()
