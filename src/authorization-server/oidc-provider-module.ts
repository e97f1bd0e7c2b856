/**
 * Loads oidc-provider once, only where an authorization server runs, without the
 * "Unsupported runtime" warning it prints on Node 20 (it targets 22+; what mcpgw uses works on
 * 20). The package ships no type declarations: each caller states the part of its API it uses.
 */
let loaded: Promise<unknown> | undefined;

export function importOidcProvider<Module>(): Promise<Module> {
  loaded ??= (async () => {
    // A variable, so that TypeScript does not look for the declarations the package lacks.
    const specifier: string = "oidc-provider";
    const warn = console.warn;
    console.warn = (...args: unknown[]) => {
      if (!String(args[0]).includes("Unsupported runtime")) warn(...args);
    };
    try {
      return await import(specifier);
    } finally {
      console.warn = warn;
    }
  })();
  return loaded as Promise<Module>;
}
