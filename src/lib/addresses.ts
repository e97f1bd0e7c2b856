/**
 * IP addresses and ranges: parsing `trust_proxy` and `outbound.allowed_networks` entries, and
 * telling the special-use addresses that the gateway's own fetches refuse by default.
 */
import { BlockList, isIP } from "node:net";

/** `10.0.0.0/8`, `::1`, `127.0.0.1` -> [address, prefix length, family]; undefined when invalid. */
export function parseAddressRange(text: string): [string, number, "ipv4" | "ipv6"] | undefined {
  const [address = "", prefix] = text.split("/");
  const version = isIP(address);
  if (version === 0) return undefined;
  const max = version === 4 ? 32 : 128;
  const length = prefix === undefined ? max : Number(prefix);
  if (
    !Number.isInteger(length) ||
    length < 0 ||
    length > max ||
    (prefix !== undefined && !/^\d+$/.test(prefix))
  ) {
    return undefined;
  }
  return [address, length, version === 4 ? "ipv4" : "ipv6"];
}

/**
 * Special-use ranges (IANA's IPv4 and IPv6 special-purpose registries, the ones a fetch must not
 * reach by default): "this network", private, shared (CGNAT), loopback, link-local (cloud
 * metadata services live there), IETF protocol assignments, benchmarking, multicast, reserved;
 * IPv6 unspecified, loopback, NAT64, discard, unique local, link-local, multicast. IPv4-mapped
 * IPv6 addresses are checked as the IPv4 address they carry.
 */
const SPECIAL_USE: readonly [string, number, "ipv4" | "ipv6"][] = [
  ["0.0.0.0", 8, "ipv4"],
  ["10.0.0.0", 8, "ipv4"],
  ["100.64.0.0", 10, "ipv4"],
  ["127.0.0.0", 8, "ipv4"],
  ["169.254.0.0", 16, "ipv4"],
  ["172.16.0.0", 12, "ipv4"],
  ["192.0.0.0", 24, "ipv4"],
  ["192.168.0.0", 16, "ipv4"],
  ["198.18.0.0", 15, "ipv4"],
  ["224.0.0.0", 4, "ipv4"],
  ["240.0.0.0", 4, "ipv4"],
  ["::", 128, "ipv6"],
  ["::1", 128, "ipv6"],
  ["64:ff9b::", 96, "ipv6"],
  ["64:ff9b:1::", 48, "ipv6"],
  ["100::", 64, "ipv6"],
  ["fc00::", 7, "ipv6"],
  ["fe80::", 10, "ipv6"],
  ["ff00::", 8, "ipv6"],
];

const specialUse = new BlockList();
for (const [network, prefix, family] of SPECIAL_USE) specialUse.addSubnet(network, prefix, family);

/** Whether `address` (an IP as a socket reports it) is loopback, private or otherwise special. */
export function isSpecialUseAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  return specialUse.check(address, family === 4 ? "ipv4" : "ipv6");
}

export interface OutboundSettings {
  /** Connect to loopback, private and link-local addresses too. */
  allow_private_addresses: boolean;
  /** Ranges (`10.20.0.0/16`, `127.0.0.1`, `fd00::/8`) allowed although special-use. */
  allowed_networks: readonly string[];
}

/** The addresses `outbound` settings let the gateway's own fetches connect to. */
export class AllowedAddresses {
  readonly #all: boolean;
  readonly #ranges = new BlockList();

  constructor(settings: OutboundSettings) {
    this.#all = settings.allow_private_addresses;
    for (const text of settings.allowed_networks) {
      const range = parseAddressRange(text);
      if (range === undefined) throw new Error(`outbound.allowed_networks: ${text} is not a range`);
      this.#ranges.addSubnet(...range);
    }
  }

  /** Whether a connection to `address` (an IP) may be used. */
  allows(address: string): boolean {
    if (this.#all || !isSpecialUseAddress(address)) return true;
    const family = isIP(address);
    if (family === 0) return false;
    return this.#ranges.check(address, family === 4 ? "ipv4" : "ipv6");
  }
}
