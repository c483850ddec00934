export interface LogLine {
  level: number
  msg: string
  sqlState?: string
}

/** A log destination that keeps what an app logs, line by line, parsed. A write may hold several lines (the access log's). */
export function logLines() {
  const lines: LogLine[] = []
  const write = (chunk: string) => {
    for (const line of chunk.split('\n')) if (line !== '') lines.push(JSON.parse(line) as LogLine)
  }
  return { lines, stream: { write } }
}
