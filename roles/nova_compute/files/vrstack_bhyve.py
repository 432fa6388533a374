"""Nova's libvirt driver on FreeBSD bhyve, for vrstack computes (docs/freebsd.md).

Nova 34 has no bhyve code path: `[libvirt] virt_type` only accepts kvm, lxc, qemu and
parallels, and the domain XML its driver writes uses devices libvirt's bhyve driver
refuses. Two of them matter for every guest:

- our ports (vif_type `vrouter`, os-vif's VIFGeneric) become `<interface
  type='ethernet'>` without a NIC model; libvirt's bhyve driver only takes `bridge`
  interfaces (and `user` since libvirt 12.0) with model virtio or e1000;
- serial consoles are pty/file, video is virtio/cirrus, disks qcow2: bhyve needs an
  nmdm console, a gop framebuffer and raw files.

So nova-compute runs `compute_driver = vrstack_bhyve.BhyveDriver`: Nova's LibvirtDriver
whose guest definition is built here, from Nova's own config classes, and whose ports
are Nova's VIF configs turned into what bhyve accepts. The port's tap keeps Nova's name
(tap + port id); libvirt creates it in `[vrstack_bhyve] bridge`, a bridge with no
other member, and the vrouter KLD takes the tap's input before the bridge sees it.
"""

from __future__ import annotations

import os
from typing import Any

from nova.conf import libvirt as libvirt_conf
from nova.virt.libvirt import config as vconfig
from nova.virt.libvirt import driver as libvirt_driver
from oslo_config import cfg
from oslo_utils import units

VIRT_TYPE = "bhyve"
OPTS = [
    cfg.StrOpt("bridge", default="vrbr0", help="Bridge libvirt puts the guests' taps in"),
    cfg.StrOpt(
        "firmware",
        default="/usr/local/share/uefi-firmware/BHYVE_UEFI.fd",
        help="UEFI firmware (bhyve-firmware package)",
    ),
]
CONF = cfg.CONF
CONF.register_opts(OPTS, group="vrstack_bhyve")


def allow_bhyve_virt_type() -> None:
    """Add bhyve to `[libvirt] virt_type`'s choices (oslo.config checks them when
    the value is read, so this must run before nova reads it)."""
    for opt in libvirt_conf.libvirt_general_opts:
        if opt.name == "virt_type" and VIRT_TYPE not in opt.type.choices:
            opt.type.choices[VIRT_TYPE] = None


allow_bhyve_virt_type()


class NmdmSerial(vconfig.LibvirtConfigGuestSerial):  # type: ignore[misc]
    """A null-modem serial port: bhyve's only console (`-l com1,/dev/nmdm...A`)."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.type = "nmdm"
        self.master = f"/dev/nmdm{name}A"
        self.slave = f"/dev/nmdm{name}B"

    def format_dom(self) -> Any:
        dev = super().format_dom()
        source = dev.makeelement("source", {"master": self.master, "slave": self.slave})
        dev.insert(0, source)
        return dev


def interface(nova_conf: Any, bridge: str) -> Any:
    """Nova's interface config for one port, as libvirt's bhyve driver takes it."""
    if nova_conf.net_type not in ("ethernet", "bridge"):
        raise ValueError(f"bhyve: interface type {nova_conf.net_type!r} is not supported")
    nova_conf.net_type = "bridge"
    nova_conf.source_dev = bridge
    # Nova leaves the model to the hypervisor outside kvm/qemu; bhyve wants one.
    nova_conf.model = nova_conf.model if nova_conf.model in ("virtio", "e1000") else "virtio"
    # bhyve has no vhost driver, packed queues, queue sizes, nwfilter, VLAN tags,
    # bandwidth limits or MTU setting.
    nova_conf.driver_name = None
    nova_conf.driver_packed = False
    nova_conf.filtername = None
    nova_conf.vlan = None
    nova_conf.vhost_queues = None
    nova_conf.vhost_rx_queue_size = None
    nova_conf.vhost_tx_queue_size = None
    nova_conf.mtu = None
    for key in ("vif_inbound_average", "vif_inbound_peak", "vif_inbound_burst"):
        setattr(nova_conf, key, None)
    for key in ("vif_outbound_average", "vif_outbound_peak", "vif_outbound_burst"):
        setattr(nova_conf, key, None)
    return nova_conf


def guest(
    *,
    name: str,
    uuid: str,
    memory_mb: int,
    vcpus: int,
    disk_path: str,
    interfaces: list[Any],
    vnc_listen: str,
    firmware: str,
) -> Any:
    """The domain: UEFI boot, a raw virtio disk, the ports, an nmdm console and a
    VNC framebuffer (gop) with a USB tablet."""
    conf = vconfig.LibvirtConfigGuest()
    conf.virt_type = VIRT_TYPE
    conf.name = name
    conf.uuid = uuid
    conf.memory = memory_mb * units.Ki  # KiB
    conf.vcpus = vcpus
    conf.os_type = "hvm"
    conf.os_loader = firmware
    conf.os_loader_type = "pflash"
    conf.os_loader_readonly = True
    conf.features = [
        vconfig.LibvirtConfigGuestFeatureACPI(),
        vconfig.LibvirtConfigGuestFeatureAPIC(),
    ]
    conf.clock = vconfig.LibvirtConfigGuestClock()  # utc: bhyve -u
    disk = vconfig.LibvirtConfigGuestDisk()
    disk.source_type = "file"
    disk.source_device = "disk"
    disk.driver_name = "file"
    disk.driver_format = "raw"
    disk.source_path = disk_path
    disk.target_dev = "vda"
    disk.target_bus = "virtio"
    conf.add_device(disk)
    for nic in interfaces:
        conf.add_device(nic)
    conf.add_device(NmdmSerial(uuid))
    graphics = vconfig.LibvirtConfigGuestGraphics()
    graphics.type = "vnc"
    graphics.listen = vnc_listen
    conf.add_device(graphics)
    video = vconfig.LibvirtConfigGuestVideo()
    video.type = "gop"
    conf.add_device(video)
    # bhyve's tablet is an xhci device: one nec-xhci controller, one tablet.
    usb = vconfig.LibvirtConfigGuestController()
    usb.type = "usb"
    usb.model = "nec-xhci"
    conf.add_device(usb)
    conf.add_device(vconfig.LibvirtConfigGuestInput())
    return conf


class BhyveDriver(libvirt_driver.LibvirtDriver):  # type: ignore[misc]
    """LibvirtDriver whose guests are bhyve domains (see the module's docstring);
    Nova's VIF driver (self.vif_driver) is used as it is, `interface` adapts its
    result."""

    def _get_guest_config(
        self,
        instance: Any,
        network_info: Any,
        image_meta: Any,
        disk_info: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        flavor = instance.flavor
        nics = [
            interface(
                self.vif_driver.get_config(instance, vif, image_meta, flavor, VIRT_TYPE),
                CONF.vrstack_bhyve.bridge,
            )
            for vif in network_info
        ]
        return guest(
            name=instance.name,
            uuid=instance.uuid,
            memory_mb=flavor.memory_mb,
            vcpus=flavor.vcpus,
            disk_path=os.path.join(CONF.instances_path, instance.uuid, "disk"),
            interfaces=nics,
            vnc_listen=CONF.vnc.server_listen,
            firmware=CONF.vrstack_bhyve.firmware,
        )
