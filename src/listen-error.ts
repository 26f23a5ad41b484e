/** A listener that could not be opened (an address in use, a privileged port, an address of no interface): said in one line. */
export class ListenError extends Error {
  static from(err: unknown): Error {
    const e = err as NodeJS.ErrnoException & { address?: string; port?: number }
    const reason =
      e?.code === 'EADDRINUSE'
        ? 'the address is already in use (by another process, or by another listener of this configuration)'
        : e?.code === 'EACCES'
          ? 'permission denied (a port below 1024 needs privileges)'
          : e?.code === 'EADDRNOTAVAIL'
            ? 'no interface of this machine has that address'
            : undefined
    if (reason === undefined || e.address === undefined) return err instanceof Error ? err : new Error(String(err))
    const host = e.address.includes(':') ? `[${e.address}]` : e.address
    return new ListenError(`cannot listen on ${host}:${e.port}: ${reason}`, { cause: err })
  }
}

