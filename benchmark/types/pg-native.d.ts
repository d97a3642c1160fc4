// pg-native ships no typings: the part of its API the benchmark uses.
declare module 'pg-native' {
  type Callback<T> = (err: Error | null | undefined, value: T) => void;
  class Client {
    constructor(config?: { arrayMode?: boolean });
    connect(conninfo: string, cb: (err?: Error) => void): void;
    query(text: string, values: unknown[], cb: Callback<Record<string, unknown>[]>): void;
    end(cb?: () => void): void;
  }
  export = Client;
}
