package dockerctl

import (
	"fmt"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/container"
)

// A clone is faithful when the new container ends up with every setting the
// old one had. CloneConfig copies the whole HostConfig (through JSON, so
// fields of later API versions travel too) and, of Config, everything the
// user set; what it does not carry over is classified here, once:
//
//   - deliberately changed: the image; the name (a temporary one, renamed at
//     the end); the network mode and the networks holding static IPs or
//     fixed host ports (joined at the handover, after the old container
//     stopped, with the same addresses); a default hostname (the short ID);
//     ContainerIDFile (the old container's ID is in that file); baton's own
//     labels.
//   - runtime, not configuration: State, IDs, addresses the engine
//     assigned, RestartCount, ExecIDs, GraphDriver, SizeRw, the effective
//     AppArmor/SELinux labels (their settings are HostConfig.SecurityOpt).
//   - only meaningful when building an image: Config.Shell, OnBuild,
//     ArgsEscaped.
//   - cannot be carried: a MAC address the user chose (Config.MacAddress,
//     as API 1.41 reports it and later engines still do for the primary
//     network): two containers cannot hold it at once while both run, and
//     the engine takes it only at create, so the new container would get a
//     generated one. Drift names it, and the deploy refuses unless the
//     operator accepts it (--accept-drift mac-address).
//
// Known limit: since API 1.44 the engine does not report whether an
// endpoint's MAC address was chosen or generated (it keeps that to
// itself), so a MAC chosen per network on a current engine is not seen.

// DriftField is one setting of the old container that its clone cannot
// have, named as --accept-drift takes it.
type DriftField struct {
	Field  string `json:"field"`
	Old    string `json:"old"`
	Reason string `json:"reason"`
	// Instead says what the new container gets if the drift is accepted.
	Instead string `json:"instead"`
}

// Drift field names.
const (
	DriftMACAddress = "mac-address"
	// DriftComposeInjected is compose configs and secrets with a content:
	// or environment: source, which compose (outside Swarm) copies into
	// the container when it creates it rather than bind-mounting: not part
	// of the container's configuration, so not of a clone's. The deploy
	// package finds them in the project's compose files.
	DriftComposeInjected = "compose-injected"
)

// DriftFields are the names --accept-drift accepts.
var DriftFields = []string{DriftComposeInjected, DriftMACAddress}

// Carried names the settings a clone carries over differently from a plain
// copy, for the plan: they end up as they were, but later.
func Carried(spec *CloneSpec) []string {
	var out []string
	for _, a := range spec.Networks {
		if a.Endpoint == nil || a.Endpoint.IPAMConfig == nil {
			continue
		}
		ipam := a.Endpoint.IPAMConfig
		for _, ip := range append([]string{ipam.IPv4Address, ipam.IPv6Address}, ipam.LinkLocalIPs...) {
			if ip != "" {
				out = append(out, fmt.Sprintf("static IP %s on network %s: the new container warms up without it and takes it when the old one has stopped", ip, a.Name))
			}
		}
	}
	return out
}

// Drift compares the old container with its clone and names each setting
// the clone cannot carry over. Pure: it reads the inspect data and the
// spec.
func Drift(old container.InspectResponse, spec *CloneSpec) []DriftField {
	var out []DriftField
	if old.Config != nil {
		if mac := old.Config.MacAddress; mac != "" { //nolint:staticcheck // SA1019: how API < 1.44 reports a chosen MAC.
			newMAC := ""
			if spec != nil && spec.Config != nil {
				newMAC = spec.Config.MacAddress //nolint:staticcheck // SA1019
			}
			if newMAC != mac {
				out = append(out, DriftField{Field: DriftMACAddress, Old: mac,
					Reason:  "two containers cannot hold one MAC address while both run, and the engine sets it only when a container is created",
					Instead: "a MAC address the engine generates"})
			}
		}
	}
	return out
}

// ParseDriftFields validates a comma-separated --accept-drift list and
// returns it cleaned and sorted.
func ParseDriftFields(v string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !slices.Contains(DriftFields, f) {
			return nil, fmt.Errorf("unknown field %q; baton can accept drift of: %s", f, strings.Join(DriftFields, ", "))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out, nil
}

// fieldFate is what a clone does with one field of the engine's container
// settings. Every field of container.Config, container.HostConfig and
// network.EndpointSettings has one in the tables below, and a test fails
// when the Docker SDK gains a field they do not name: a new setting is
// classified (and carried, or named by Drift) before it can be lost
// silently.
type fieldFate string

const (
	// fateCopied: the clone has it as the old container had it (for
	// Config, what the user set rather than the image's default).
	fateCopied fieldFate = "copied"
	// fateChanged: deliberately different in the clone (see the list at
	// the top of this file).
	fateChanged fieldFate = "changed"
	// fateBuildOnly: only meaningful when building on top of the image.
	fateBuildOnly fieldFate = "build-only"
	// fateRuntime: what the engine assigned or reports, not configuration.
	fateRuntime fieldFate = "runtime"
	// fateDrift: cannot be carried over; Drift names it.
	fateDrift fieldFate = "drift"
)

// configFates classifies container.Config (cloneContainerConfig).
var configFates = map[string]fieldFate{
	"Hostname": fateCopied, "Domainname": fateCopied, "User": fateCopied,
	"AttachStdin": fateCopied, "AttachStdout": fateCopied, "AttachStderr": fateCopied,
	"ExposedPorts": fateCopied, "Tty": fateCopied, "OpenStdin": fateCopied, "StdinOnce": fateCopied,
	"Env": fateCopied, "Cmd": fateCopied, "Healthcheck": fateCopied, "Volumes": fateCopied,
	"WorkingDir": fateCopied, "Entrypoint": fateCopied, "NetworkDisabled": fateCopied,
	"Labels": fateCopied, "StopSignal": fateCopied, "StopTimeout": fateCopied,
	"Image":       fateChanged,
	"MacAddress":  fateDrift,
	"ArgsEscaped": fateBuildOnly, "OnBuild": fateBuildOnly, "Shell": fateBuildOnly,
}

// hostConfigFates classifies container.HostConfig, fields of the embedded
// Resources included: cloneHostConfig copies it whole, through JSON.
var hostConfigFates = func() map[string]fieldFate {
	m := map[string]fieldFate{}
	for _, f := range []string{
		"Binds", "LogConfig", "NetworkMode", "PortBindings", "RestartPolicy", "AutoRemove", "VolumeDriver", "VolumesFrom",
		"ConsoleSize", "Annotations", "CapAdd", "CapDrop", "CgroupnsMode", "DNS", "DNSOptions", "DNSSearch", "ExtraHosts",
		"GroupAdd", "IpcMode", "Cgroup", "Links", "OomScoreAdj", "PidMode", "Privileged", "PublishAllPorts", "ReadonlyRootfs",
		"SecurityOpt", "StorageOpt", "Tmpfs", "UTSMode", "UsernsMode", "ShmSize", "Sysctls", "Runtime", "Isolation",
		// Resources
		"CPUShares", "Memory", "NanoCPUs", "CgroupParent", "BlkioWeight", "BlkioWeightDevice", "BlkioDeviceReadBps",
		"BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps", "CPUPeriod", "CPUQuota", "CPURealtimePeriod",
		"CPURealtimeRuntime", "CpusetCpus", "CpusetMems", "Devices", "DeviceCgroupRules", "DeviceRequests", "KernelMemory",
		"KernelMemoryTCP", "MemoryReservation", "MemorySwap", "MemorySwappiness", "OomKillDisable", "PidsLimit", "Ulimits",
		"CPUCount", "CPUPercent", "IOMaximumIOps", "IOMaximumBandwidth",
		"MaskedPaths", "ReadonlyPaths", "Init",
	} {
		m[f] = fateCopied
	}
	// Mounts is copied, and the old container's anonymous volumes are added
	// to it by name, so the clone mounts the same ones.
	m["Mounts"] = fateCopied
	// The old container's ID is in that file.
	m["ContainerIDFile"] = fateChanged
	return m
}()

// endpointFates classifies network.EndpointSettings (cloneNetworks).
var endpointFates = map[string]fieldFate{
	"IPAMConfig": fateCopied, "Links": fateCopied, "Aliases": fateCopied, "DriverOpts": fateCopied,
	"GwPriority": fateCopied, "NetworkID": fateCopied,
	// Drift sees a chosen MAC as Config.MacAddress; per endpoint, API 1.44
	// and later do not say whether it was chosen (see the known limit).
	"MacAddress": fateDrift,
	"EndpointID": fateRuntime, "Gateway": fateRuntime, "IPAddress": fateRuntime, "IPPrefixLen": fateRuntime,
	"IPv6Gateway": fateRuntime, "GlobalIPv6Address": fateRuntime, "GlobalIPv6PrefixLen": fateRuntime,
	"DNSNames": fateRuntime,
}
