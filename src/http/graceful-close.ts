import type { IncomingMessage, ServerResponse } from 'node:http'
import { Server, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'

declare module 'fastify' {
  interface FastifyInstance {
    /** True from the moment shutDown() is called; /readyz answers 503 from then on. */
    readonly shuttingDown: boolean
    /**
     * Keeps serving for the shutdown delay, stops accepting connections, waits for `listenerClosed`
     * (the other workers of a cluster share the listener), then closes the app gracefully.
     */
    shutDown(listenerClosed?: () => Promise<void>): Promise<void>
  }
}

/**
 * A keep-alive connection with no request in progress may still have one on its way: the client
 * sent it right after the previous answer and it has not been read yet. Ending such a connection
 * loses that request (the client sees a reset or "other side closed" and cannot know whether a POST
 * happened), so on close a connection is ended only once it has been quiet this long.
 */
const quietMs = 1000

interface Connection {
  requestsInProgress: number
  lastActiveAt: number
  /** The response of the latest request, while in progress. */
  response?: ServerResponse
  endTimer?: NodeJS.Timeout
}

/** Node then answers with `Connection: close` and ends the connection once the answer is written. */
function closeAfter(response: ServerResponse): void {
  if (!response.headersSent) response.shouldKeepAlive = false
}

/**
 * On close, the listener closes first (new connections are refused from then on), then every request
 * that reaches the server on an open connection is answered with `Connection: close`, and a
 * connection without a request in progress is ended once it has been quiet for `quietMs`. Node's
 * server.close() would destroy such connections at once, request on its way or not.
 */
export function closeConnectionsGracefully(app: FastifyInstance, shutdownDelayMs: number): void {
  const connections = new Map<Socket, Connection>()
  let shuttingDown = false
  let closing = false

  const endWhenQuiet = (socket: Socket, connection: Connection) => {
    clearTimeout(connection.endTimer)
    if (connection.requestsInProgress > 0) return
    connection.endTimer = setTimeout(
      () => {
        socket.once('finish', () => socket.destroy())
        socket.end()
      },
      Math.max(0, connection.lastActiveAt + quietMs - Date.now()),
    )
  }

  app.server.on('connection', (socket: Socket) => {
    const connection: Connection = { requestsInProgress: 0, lastActiveAt: Date.now() }
    connections.set(socket, connection)
    socket.once('close', () => {
      clearTimeout(connection.endTimer)
      connections.delete(socket)
    })
  })
  app.server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket
    const connection = connections.get(socket)
    if (!connection) return
    connection.requestsInProgress++
    connection.response = response
    clearTimeout(connection.endTimer)
    if (closing) closeAfter(response)
    response.once('close', () => {
      connection.requestsInProgress--
      if (connection.response === response) connection.response = undefined
      connection.lastActiveAt = Date.now()
      if (closing) endWhenQuiet(socket, connection)
    })
  })
  // server.close() calls it to destroy idle connections at once; they are ended when quiet instead.
  app.server.closeIdleConnections = () => {
    closing = true
    for (const [socket, connection] of connections) {
      if (connection.response) closeAfter(connection.response)
      endWhenQuiet(socket, connection)
    }
  }

  app.decorate('shuttingDown', {
    getter: () => shuttingDown,
  })
  app.decorate('shutDown', async (listenerClosed?: () => Promise<void>) => {
    shuttingDown = true
    if (shutdownDelayMs > 0) await sleep(shutdownDelayMs)
    // Only the listener, and before any answer says `Connection: close`: a client that reconnects
    // must find the port closed, not sit in the listener's backlog and be reset when it closes.
    Server.prototype.close.call(app.server)
    await listenerClosed?.()
    await app.close()
  })
}
