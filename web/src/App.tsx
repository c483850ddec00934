import { keepPreviousData, QueryClient, QueryClientProvider, useMutation, useQuery, useQueryClient } from '@tanstack/react-query'
import { useCallback, useEffect, useId, useRef, useState } from 'react'
import { ApiError, apiToken, type NewUser, type User, type UsersApi } from './api/client'
import { ErrorMessage, isBusy } from './components/ErrorMessage'
import { Modal } from './components/Modal'
import { UserForm } from './components/UserForm'

export const pageSize = 20
/** A change made elsewhere shows within this time plus one request; an unchanged page costs a 304. */
export const refreshIntervalMs = 2000

export function App({ api, queryClient }: { api: UsersApi; queryClient?: QueryClient }) {
  const [client] = useState(() => queryClient ?? new QueryClient())
  return (
    <QueryClientProvider client={client}>
      <UsersPage api={api} />
    </QueryClientProvider>
  )
}

function useDebounced<T>(value: T, delayMs: number): T {
  const [settled, setSettled] = useState(value)
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), delayMs)
    return () => clearTimeout(timer)
  }, [value, delayMs])
  return settled
}

interface TokenRequest {
  reason: string
  answer(saved: boolean): void
}

/**
 * Runs a request; when the server answers 401, asks for the API token and runs it again with it.
 * Requests refused at the same time share one dialog.
 */
function useTokenPrompt() {
  const [request, setRequest] = useState<TokenRequest>()
  const pending = useRef<Promise<boolean>>(undefined)
  const askForToken = useCallback((reason: string) => {
    pending.current ??= new Promise<boolean>((resolve) =>
      setRequest({
        reason,
        answer(saved) {
          pending.current = undefined
          setRequest(undefined)
          resolve(saved)
        },
      }),
    )
    return pending.current
  }, [])
  const authorized = useCallback(
    async <T,>(run: () => Promise<T>): Promise<T> => {
      for (;;) {
        try {
          return await run()
        } catch (error) {
          if (!(error instanceof ApiError && error.status === 401) || !(await askForToken(error.message))) throw error
        }
      }
    },
    [askForToken],
  )
  return { request, authorized }
}

function TokenDialog({ request }: { request: TokenRequest }) {
  const [token, setToken] = useState('')
  const fieldId = useId()
  return (
    <Modal title="API token required" onCancel={() => request.answer(false)}>
      <p>{request.reason} This server needs its API token for this. It is kept for this browser tab only.</p>
      <form
        onSubmit={(event) => {
          event.preventDefault()
          apiToken.save(token.trim())
          request.answer(true)
        }}
      >
        <div className="field">
          <label htmlFor={fieldId}>API token</label>
          <input
            id={fieldId}
            type="password"
            value={token}
            onChange={(event) => setToken(event.target.value)}
            required
            autoComplete="off"
            autoFocus
          />
        </div>
        <div className="actions">
          <button type="submit" className="primary">
            Save token
          </button>
          <button type="button" onClick={() => request.answer(false)}>
            Cancel
          </button>
        </div>
      </form>
    </Modal>
  )
}

function BusyBanner({ error }: { error: ApiError }) {
  const wait = error.retryAfterSeconds
  return (
    <div role="alert" className="banner">
      <strong>{error.status === 429 ? 'Too many requests.' : 'The service is unavailable.'}</strong> {error.message}
      {wait !== undefined && ` Try again in ${wait} second${wait === 1 ? '' : 's'}.`}
    </div>
  )
}

interface Paging {
  q: string
  after: number
  /** The `after` cursors of the pages before this one, for "Previous page". */
  previous: number[]
}

function UsersPage({ api }: { api: UsersApi }) {
  const queryClient = useQueryClient()
  const { request: tokenRequest, authorized } = useTokenPrompt()
  const [status, setStatus] = useState('')
  const [busy, setBusy] = useState<ApiError>()
  const [search, setSearch] = useState('')
  const q = useDebounced(search.trim(), 250)
  const [paging, setPaging] = useState<Paging>({ q: '', after: 0, previous: [] })
  const page = paging.q === q ? paging : { q, after: 0, previous: [] }
  const [editing, setEditing] = useState<number>()
  const editButtons = useRef(new Map<number, HTMLButtonElement>())
  const stopEditing = (id: number) => {
    setEditing(undefined)
    // Back to the row's Edit button once it is rendered again, so keyboard users keep their place.
    requestAnimationFrame(() => editButtons.current.get(id)?.focus())
  }
  const [deleting, setDeleting] = useState<User>()
  const searchId = useId()

  const noteError = (error: unknown) => {
    if (isBusy(error)) setBusy(error)
  }
  const succeeded = (message: string) => {
    setStatus(message)
    setBusy(undefined)
    return queryClient.invalidateQueries({ queryKey: ['users'] })
  }

  const list = useQuery({
    queryKey: ['users', page.q, page.after],
    queryFn: async () => {
      try {
        const found = await authorized(() => api.listUsers({ limit: pageSize, after: page.after || undefined, q: page.q || undefined }))
        setBusy((shown) => (shown && shown.status === 503 ? undefined : shown))
        return found
      } catch (error) {
        noteError(error)
        throw error
      }
    },
    refetchInterval: refreshIntervalMs,
    placeholderData: keepPreviousData,
    retry: false,
  })

  const create = useMutation({
    mutationFn: (user: NewUser) => authorized(() => api.createUser(user)),
    onSuccess: (user) => succeeded(`Created ${user.name}.`),
    onError: noteError,
  })
  const replace = useMutation({
    mutationFn: ({ id, user }: { id: number; user: NewUser }) => authorized(() => api.replaceUser(id, user)),
    onSuccess: (user) => {
      stopEditing(user.id)
      return succeeded(`Saved ${user.name}.`)
    },
    onError: noteError,
  })
  const remove = useMutation({
    mutationFn: (user: User) => authorized(() => api.deleteUser(user.id)),
    onSuccess: (_, user) => {
      setDeleting(undefined)
      return succeeded(`Deleted ${user.name}.`)
    },
    onError: noteError,
  })
  const accepted = (mutation: Promise<unknown>) => mutation.then(
    () => true,
    () => false,
  )

  const users = list.data?.users
  const nextAfter = list.isPlaceholderData ? undefined : list.data?.nextAfter

  return (
    <>
      <header className="page-header">
        <h1>Users</h1>
      </header>
      <main>
        {busy && <BusyBanner error={busy} />}
        <p role="status" className="status">
          {status}
        </p>

        <section className="panel" aria-labelledby="new-user-heading">
          <h2 id="new-user-heading">New user</h2>
          <UserForm
            label="New user"
            pending={create.isPending}
            error={create.error}
            resetOnSuccess
            onSubmit={(user) => accepted(create.mutateAsync(user))}
          >
            <button type="submit" className="primary" disabled={create.isPending}>
              Create user
            </button>
          </UserForm>
        </section>

        <section className="panel" aria-labelledby="list-heading">
          <h2 id="list-heading" tabIndex={-1}>
            All users
          </h2>
          <search className="field search">
            <label htmlFor={searchId}>Search</label>
            <input
              id={searchId}
              type="search"
              value={search}
              onChange={(event) => setSearch(event.target.value)}
              placeholder="Part of a name or email"
              maxLength={100}
            />
          </search>
          {list.isError && !list.data && <ErrorMessage error={list.error} />}
          <table aria-label="Users">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Email</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {users?.map((user) =>
                editing === user.id ? (
                  <tr key={user.id}>
                    <td colSpan={3}>
                      <UserForm
                        label={`Edit ${user.name}`}
                        initial={{ name: user.name, email: user.email }}
                        pending={replace.isPending}
                        error={replace.error}
                        onEscape={() => stopEditing(user.id)}
                        onSubmit={(changed) => accepted(replace.mutateAsync({ id: user.id, user: changed }))}
                      >
                        <button type="submit" className="primary" disabled={replace.isPending}>
                          Save
                        </button>
                        <button type="button" onClick={() => stopEditing(user.id)}>
                          Cancel
                        </button>
                      </UserForm>
                    </td>
                  </tr>
                ) : (
                  <tr key={user.id}>
                    <td>{user.name}</td>
                    <td className="email">
                      {/* On a narrow screen an email breaks after its @ rather than anywhere. */}
                      {user.email.slice(0, user.email.lastIndexOf('@') + 1)}
                      <wbr />
                      {user.email.slice(user.email.lastIndexOf('@') + 1)}
                    </td>
                    <td className="row-actions">
                      <button
                        type="button"
                        aria-label={`Edit ${user.name}`}
                        ref={(button) => {
                          if (button) editButtons.current.set(user.id, button)
                          else editButtons.current.delete(user.id)
                        }}
                        onClick={() => {
                          replace.reset()
                          setEditing(user.id)
                        }}
                      >
                        Edit
                      </button>
                      <button
                        type="button"
                        className="danger"
                        aria-label={`Delete ${user.name}`}
                        onClick={() => {
                          remove.reset()
                          setDeleting(user)
                        }}
                      >
                        Delete
                      </button>
                    </td>
                  </tr>
                ),
              )}
              {users?.length === 0 && (
                <tr>
                  <td colSpan={3}>{page.q ? `No user’s name or email contains “${page.q}”.` : 'No users on this page.'}</td>
                </tr>
              )}
              {!users && list.isPending && (
                <tr>
                  <td colSpan={3}>Loading…</td>
                </tr>
              )}
            </tbody>
          </table>
          <nav className="pager" aria-label="Pages">
            <button
              type="button"
              disabled={page.previous.length === 0}
              onClick={() => setPaging({ q, after: page.previous.at(-1) ?? 0, previous: page.previous.slice(0, -1) })}
            >
              Previous page
            </button>
            <button
              type="button"
              disabled={nextAfter === undefined}
              onClick={() =>
                nextAfter !== undefined && setPaging({ q, after: nextAfter, previous: [...page.previous, page.after] })
              }
            >
              Next page
            </button>
          </nav>
        </section>
      </main>

      {deleting && (
        <Modal title="Delete user?" onCancel={() => setDeleting(undefined)}>
          <p>
            {deleting.name} ({deleting.email}) will be deleted. This cannot be undone.
          </p>
          <div className="actions">
            <button type="button" className="danger" disabled={remove.isPending} onClick={() => remove.mutate(deleting)}>
              Delete
            </button>
            <button type="button" onClick={() => setDeleting(undefined)} autoFocus>
              Cancel
            </button>
          </div>
          <ErrorMessage error={remove.error} />
        </Modal>
      )}
      {tokenRequest && <TokenDialog request={tokenRequest} />}
    </>
  )
}
