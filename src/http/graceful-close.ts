import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'

/**
 * On close, every request already received is answered and nothing else holds the server open:
 * answers sent while closing end their keep-alive connection, and connections without a request in
 * progress (idle, or whose request has not fully arrived) are ended at once. Node's server.close()
 * leaves those open until they time out.
 */
export function closeConnectionsGracefully(app: FastifyInstance): void {
  const requestsInProgress = new Map<Socket, number>()
  let closing = false
  const endIfIdle = (socket: Socket) => {
    if (requestsInProgress.get(socket) !== 0) return
    socket.once('finish', () => socket.destroy())
    socket.end()
  }

  app.server.on('connection', (socket: Socket) => {
    requestsInProgress.set(socket, 0)
    socket.once('close', () => requestsInProgress.delete(socket))
  })
  app.server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket
    if (!requestsInProgress.has(socket)) return
    requestsInProgress.set(socket, requestsInProgress.get(socket)! + 1)
    response.once('close', () => {
      if (!requestsInProgress.has(socket)) return
      requestsInProgress.set(socket, requestsInProgress.get(socket)! - 1)
      if (closing) endIfIdle(socket)
    })
  })
  app.addHook('preClose', async () => {
    closing = true
    for (const socket of requestsInProgress.keys()) endIfIdle(socket)
  })
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close')
  })
}
