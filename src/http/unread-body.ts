import type { FastifyInstance } from 'fastify'

/**
 * An answer sent before its request's body has arrived (413 for a body over the limit, 401, 429, a
 * parse error) closes the connection, and Node destroys the socket as soon as the answer is written.
 * The client may still be sending: its kernel then receives a reset and often discards the answer
 * before the client reads it (EPIPE instead of 413). So the server half-closes instead, reads and
 * discards what the client still sends, and destroys the socket once the body has ended, the client
 * has closed its side, or `timeoutMs` has passed.
 */
export function answerBeforeUnreadBody(app: FastifyInstance, timeoutMs: number): void {
  app.addHook('onSend', (request, reply, payload, done) => {
    const { raw } = request
    if (raw.complete) return done(null, payload)
    const socket = raw.socket
    reply.header('connection', 'close')
    // Node calls it once a `Connection: close` answer is written; this socket serves no other request.
    socket.destroySoon = () => {
      let clientDone = false
      const destroyWhenDone = () => {
        if (clientDone && socket.writableFinished) socket.destroy()
      }
      const onClientDone = () => {
        clientDone = true
        destroyWhenDone()
      }
      const timer = setTimeout(() => socket.destroy(), timeoutMs)
      socket.once('close', () => clearTimeout(timer))
      socket.once('finish', destroyWhenDone)
      socket.once('end', onClientDone)
      raw.once('end', onClientDone)
      raw.resume()
      socket.end()
    }
    done(null, payload)
  })
}
