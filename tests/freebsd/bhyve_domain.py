"""Run with the OpenStack virtualenv's python (Nova, os-vif installed).

`python bhyve_domain.py REPO` prints, as JSON, the bhyve domain XML vrstack's Nova
driver (roles/nova_compute/files/vrstack_bhyve.py) defines for a server with one
vrouter port, and the interface Nova's own VIF driver writes for that port.

`python bhyve_domain.py REPO --conf FILE [--plain]` loads nova-compute.conf FILE as
nova-compute would, with the driver's module on the path (or, with --plain, Nova
alone), and prints the settings a FreeBSD compute depends on, or the error."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import os_vif.objects
from nova import objects
from nova.network import model as network_model
from nova.virt.libvirt import vif as libvirt_vif
from oslo_config import cfg
from oslo_utils import importutils

REPO = Path(sys.argv[1])
PLAIN = "--plain" in sys.argv
if not PLAIN:
    sys.path.insert(0, str(REPO / "roles" / "nova_compute" / "files"))
CONF = cfg.CONF

PORT = "5f0c3a1e-2b7d-4c88-9e41-0a6b8d2f7c10"
SERVER = "0b7e6d52-31c4-4f6e-8a2d-5c9f1e7a4b36"


def load_conf(path: str) -> dict[str, Any]:
    """The settings as nova-compute reads them; its driver class as
    nova.virt.driver.load_compute_driver finds it."""
    if not PLAIN:
        importlib.import_module("vrstack_bhyve")
    CONF([], project="nova", default_config_files=[path])
    try:
        return {
            "virt_type": CONF.libvirt.virt_type,
            "images_type": CONF.libvirt.images_type,
            "use_cow_images": CONF.use_cow_images,
            "compute_driver": CONF.compute_driver,
            "bridge": CONF.vrstack_bhyve.bridge,
            "firmware": CONF.vrstack_bhyve.firmware,
            "driver_class": importutils.import_class(CONF.compute_driver).__name__,
        }
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def domain() -> dict[str, str]:
    vrstack_bhyve = importlib.import_module("vrstack_bhyve")
    objects.register_all()
    os_vif.objects.register_all()
    # What roles/nova_compute writes into nova-compute.conf on a FreeBSD compute.
    CONF([], project="nova", default_config_files=[])
    CONF.set_override("virt_type", "bhyve", group="libvirt")
    CONF.set_override("instances_path", "/var/db/nova/instances")
    CONF.set_override("server_listen", "198.18.1.21", group="vnc")

    # A bandwidth limit and an MTU, which Nova puts on the interface and bhyve has not.
    flavor = objects.Flavor(
        name="m1.tiny",
        memory_mb=256,
        vcpus=1,
        root_gb=1,
        extra_specs={"quota:vif_inbound_average": "10240"},
    )
    instance = objects.Instance(id=42, uuid=SERVER, flavor=flavor, display_name="probe")
    image_meta = objects.ImageMeta.from_dict({"disk_format": "raw", "properties": {}})
    subnet = network_model.Subnet(
        cidr="198.19.10.0/24", ips=[network_model.FixedIP(address="198.19.10.3")]
    )
    network = network_model.Network(
        id="8d3c1f0a-6e2b-4a7d-9c51-2f8e0b4d6a19",
        bridge=None,
        subnets=[subnet],
        meta={"mtu": 1450},
    )
    # A port Neutron bound with our ML2 driver (vif_type vrouter).
    vif = network_model.VIF(
        id=PORT,
        address="fa:16:3e:12:34:56",
        network=network,
        type=network_model.VIF_TYPE_VROUTER,
        vnic_type=network_model.VNIC_TYPE_NORMAL,
        devname="tap" + PORT[:11],
        details={},
    )
    vif_driver = libvirt_vif.LibvirtGenericVIFDriver(None)
    nova_interface = vif_driver.get_config(instance, vif, image_meta, flavor, "bhyve")
    # The driver's guest definition without a libvirt connection (no bhyve here).
    driver = vrstack_bhyve.BhyveDriver.__new__(vrstack_bhyve.BhyveDriver)
    driver.vif_driver = vif_driver
    guest = driver._get_guest_config(instance, network_model.NetworkInfo([vif]), image_meta, {})
    return {"nova_interface": nova_interface.to_xml(), "domain": guest.to_xml()}


if __name__ == "__main__":
    if "--conf" in sys.argv:
        print(json.dumps(load_conf(sys.argv[sys.argv.index("--conf") + 1])))
    else:
        print(json.dumps(domain()))
