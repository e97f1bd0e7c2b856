/**
 * Keeps SIGUSR1 from opening Node's inspector. By default Node answers SIGUSR1 by listening on
 * 127.0.0.1:9229, and whoever reaches that port can run code as the gateway; operators send
 * USR1 to daemons to reopen logs and would open it by accident. A JavaScript listener for the
 * signal replaces Node's own handling (Node 20 and 24 alike), so this module installs one as
 * the first thing the bin does; `mcpgw run` adds the listener that reopens the audit file.
 * On Node 22.14+ and 24, `node --disable-sigusr1` (the unit and the image set it) also closes
 * the moment before this module runs.
 */
process.on("SIGUSR1", () => {});
