import { QueryClient } from '@tanstack/react-query'
import { render, screen, waitFor, within } from '@testing-library/react'
import userEvent from '@testing-library/user-event'
import { describe, expect, it } from 'vitest'
import { createUsersApi } from '../src/api/client'
import { App, pageSize } from '../src/App'
import { fakeServer } from './fake-server'

function renderPage() {
  render(<App api={createUsersApi('http://localhost')} queryClient={new QueryClient()} />)
  return userEvent.setup()
}

const newUserForm = () => screen.getByRole('form', { name: 'New user' })
const usersTable = () => screen.getByRole('table', { name: 'Users' })

async function fillNewUser(user: ReturnType<typeof userEvent.setup>, name: string, email: string) {
  const form = newUserForm()
  await user.type(within(form).getByLabelText('Name'), name)
  await user.type(within(form).getByLabelText('Email'), email)
}

describe('the users page', () => {
  it('creates a user once per click, with the button disabled while the request is in flight', async () => {
    const server = fakeServer()
    const user = renderPage()
    expect(screen.getByRole('heading', { level: 1, name: 'Users' })).toBeTruthy()
    await fillNewUser(user, 'Ada Lovelace', 'ada@example.com')
    const release = server.holdWrites()
    const create = within(newUserForm()).getByRole('button', { name: 'Create user' })
    await user.click(create)
    await waitFor(() => expect((create as HTMLButtonElement).disabled).toBe(true))
    await user.click(create)
    await user.keyboard('{Enter}')
    release()
    expect(await within(usersTable()).findByRole('cell', { name: 'Ada Lovelace' })).toBeTruthy()
    expect(screen.getByRole('status').textContent).toBe('Created Ada Lovelace.')
    expect(server.writes()).toHaveLength(1)
    expect(server.writes()[0]!.body).toEqual({ name: 'Ada Lovelace', email: 'ada@example.com' })
    expect((within(newUserForm()).getByLabelText('Name') as HTMLInputElement).value).toBe('')
  })

  it('shows the server’s detail next to the form for a taken email and for invalid fields', async () => {
    const server = fakeServer()
    server.add('Ada', 'ada@example.com')
    const user = renderPage()
    await fillNewUser(user, 'Second Ada', 'ADA@example.com')
    await user.click(screen.getByRole('button', { name: 'Create user' }))
    const alert = await within(newUserForm()).findByRole('alert')
    expect(alert.textContent).toContain('Another user already has this email address.')
    expect((within(newUserForm()).getByLabelText('Name') as HTMLInputElement).value).toBe('Second Ada')

    server.refuseNext({
      status: 400,
      detail: 'The request is not valid.',
      errors: [{ in: 'body', pointer: '/name', detail: 'must match pattern' }],
    })
    await user.clear(within(newUserForm()).getByLabelText('Email'))
    await user.type(within(newUserForm()).getByLabelText('Email'), 'other@example.com')
    await user.click(screen.getByRole('button', { name: 'Create user' }))
    await waitFor(() => expect(within(newUserForm()).getByRole('alert').textContent).toContain('name: must match pattern'))
    expect(within(newUserForm()).getByRole('alert').textContent).toContain('The request is not valid.')
  })

  it('edits a row in place, and Cancel leaves it unchanged', async () => {
    const server = fakeServer()
    server.add('Grace', 'grace@example.com')
    const user = renderPage()
    await user.click(await screen.findByRole('button', { name: 'Edit Grace' }))
    expect((screen.getByLabelText('Email', { selector: 'table input' }) as HTMLInputElement).value).toBe('grace@example.com')
    await user.click(within(usersTable()).getByRole('button', { name: 'Cancel' }))
    expect(server.writes()).toHaveLength(0)
    await waitFor(() => expect(document.activeElement).toBe(screen.getByRole('button', { name: 'Edit Grace' })))

    await user.click(screen.getByRole('button', { name: 'Edit Grace' }))
    const name = within(usersTable()).getByLabelText('Name')
    expect(document.activeElement).toBe(name)
    await user.clear(name)
    await user.type(name, 'Grace Hopper')
    await user.click(within(usersTable()).getByRole('button', { name: 'Save' }))
    expect(await within(usersTable()).findByRole('cell', { name: 'Grace Hopper' })).toBeTruthy()
    expect(server.writes()[0]).toMatchObject({ method: 'PUT', body: { name: 'Grace Hopper', email: 'grace@example.com' } })
    expect(screen.getByRole('status').textContent).toBe('Saved Grace Hopper.')
  })

  it('deletes only after the dialog is confirmed', async () => {
    const server = fakeServer()
    server.add('Leaving', 'leaving@example.com')
    const user = renderPage()
    await user.click(await screen.findByRole('button', { name: 'Delete Leaving' }))
    await user.click(within(screen.getByRole('dialog')).getByRole('button', { name: 'Cancel' }))
    expect(screen.queryByRole('dialog')).toBeNull()
    expect(server.writes()).toHaveLength(0)

    await user.click(screen.getByRole('button', { name: 'Delete Leaving' }))
    const dialog = screen.getByRole('dialog', { name: 'Delete user?' })
    expect(dialog.textContent).toContain('leaving@example.com')
    await user.click(within(dialog).getByRole('button', { name: 'Delete' }))
    await waitFor(() => expect(within(usersTable()).queryByRole('cell', { name: 'Leaving' })).toBeNull())
    expect(server.writes()[0]).toMatchObject({ method: 'DELETE' })
    expect(screen.queryByRole('dialog')).toBeNull()
  })

  it('asks for the API token on 401, keeps it for the session and retries the write', async () => {
    const server = fakeServer({ token: 's3cret' })
    const user = renderPage()
    await fillNewUser(user, 'Locked', 'locked@example.com')
    await user.click(screen.getByRole('button', { name: 'Create user' }))
    const dialog = await screen.findByRole('dialog')
    await user.type(within(dialog).getByLabelText('API token'), 'wrong')
    await user.click(within(dialog).getByRole('button', { name: 'Save token' }))
    const again = await screen.findByRole('dialog')
    expect(again.textContent).toContain('The bearer token is not valid.')
    await user.type(within(again).getByLabelText('API token'), 's3cret')
    await user.click(within(again).getByRole('button', { name: 'Save token' }))
    expect(await within(usersTable()).findByRole('cell', { name: 'Locked' })).toBeTruthy()
    expect(sessionStorage.getItem('users-api-token')).toBe('s3cret')
    expect(localStorage.length).toBe(0)
    expect(server.writes().map((write) => write.authorization)).toEqual([null, 'Bearer wrong', 'Bearer s3cret'])
  })

  it('shows the 401 detail when the token dialog is cancelled', async () => {
    fakeServer({ token: 's3cret' })
    const user = renderPage()
    await fillNewUser(user, 'Locked', 'locked@example.com')
    await user.click(screen.getByRole('button', { name: 'Create user' }))
    await user.click(within(await screen.findByRole('dialog')).getByRole('button', { name: 'Cancel' }))
    expect((await within(newUserForm()).findByRole('alert')).textContent).toContain('The bearer token is not valid.')
  })

  it('shows a banner with the retry time for 429 and 503', async () => {
    const server = fakeServer()
    const user = renderPage()
    await fillNewUser(user, 'Busy', 'busy@example.com')
    server.refuseNext({ status: 429, detail: 'Too many requests; try again in 7 seconds.', headers: { 'retry-after': '7' } })
    await user.click(screen.getByRole('button', { name: 'Create user' }))
    const banner = (await screen.findAllByRole('alert')).find((alert) => alert.classList.contains('banner'))!
    expect(banner.textContent).toContain('Too many requests.')
    expect(banner.textContent).toContain('Try again in 7 seconds.')

    server.refuseNext({ status: 503, detail: 'The database is unavailable; try again shortly.', headers: { 'retry-after': '2' } })
    await user.click(screen.getByRole('button', { name: 'Create user' }))
    await waitFor(() => expect(screen.getByRole('alert').textContent).toContain('The service is unavailable.'))
    expect(screen.getByRole('alert').textContent).toContain('Try again in 2 seconds.')

    await user.click(screen.getByRole('button', { name: 'Create user' }))
    await waitFor(() => expect(screen.queryByRole('alert')).toBeNull())
  })

  it('pages with Next page and Previous page, and searches', async () => {
    const server = fakeServer()
    for (let i = 1; i <= pageSize + 3; i++) server.add(`Person ${i}`, `person${i}@example.com`)
    const user = renderPage()
    await within(usersTable()).findByRole('cell', { name: 'Person 1' })
    const previous = screen.getByRole('button', { name: 'Previous page' }) as HTMLButtonElement
    expect(previous.disabled).toBe(true)
    await user.click(screen.getByRole('button', { name: 'Next page' }))
    expect(await within(usersTable()).findByRole('cell', { name: `Person ${pageSize + 1}` })).toBeTruthy()
    expect(within(usersTable()).queryByRole('cell', { name: 'Person 1' })).toBeNull()
    expect((screen.getByRole('button', { name: 'Next page' }) as HTMLButtonElement).disabled).toBe(true)
    await user.click(previous)
    expect(await within(usersTable()).findByRole('cell', { name: 'Person 1' })).toBeTruthy()

    await user.type(screen.getByRole('searchbox', { name: 'Search' }), 'SON2')
    await waitFor(() => expect(within(usersTable()).getAllByRole('row')).toHaveLength(1 + 5))
    expect(server.requests.at(-1)!.url.searchParams.get('q')).toBe('SON2')
  })
})
