"""Print the os-vif plugins nova's virtualenv offers and the libvirt binding's version, as JSON.

Run with the virtualenv's python: python -c "$(cat osvif_plugins.py)".
The names os-vif's stevedore manager finds (entry point group os_vif), read from the
installed packages' metadata instead of importing os-vif and every plugin (about 1.5 s):
a name counts only when its module is there to import. libvirt is imported, as nova does.
"""

import json
from importlib import metadata, util

import libvirt


def loadable(module: str) -> bool:
    try:
        return util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def main() -> None:
    found = metadata.entry_points(group="os_vif")
    print(
        json.dumps(
            {
                "plugins": sorted({ep.name for ep in found if loadable(ep.module)}),
                "os_vif": metadata.version("os_vif"),
                "libvirt": libvirt.getVersion(),
            }
        )
    )


if __name__ == "__main__":
    main()
