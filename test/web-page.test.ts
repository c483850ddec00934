// The page at / in Debian's Chromium, against `node dist/server.js` as `npm start` runs it: once on
// the embedded default, once on PostgreSQL with API_TOKEN. Expects `npm run build` to have run (npm test does).
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Browser, Page } from 'playwright-core'
import { launchChromium } from './support/chromium.js'
import { createTestDatabase, type TestDatabase } from './support/postgres.js'
import { projectRoot, startServerProcess, type ServerProcess } from './support/process.js'

const resultsDir = join(projectRoot, 'test-results')
const apiToken = 'web-e2e-token-0123456789'
const timeout = 15_000

interface AxeResult {
  violations: { id: string; impact: string | null; help: string; nodes: { target: unknown }[] }[]
}

async function createUser(server: ServerProcess, name: string, email: string, token?: string): Promise<void> {
  const answer = await fetch(`${server.url}/users`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ name, email }),
  })
  assert.equal(answer.status, 201, await answer.text())
}

describe('the web page in Chromium', () => {
  let browser: Browser
  let embedded: ServerProcess
  let locked: ServerProcess
  let database: TestDatabase
  const dataDirs: string[] = []
  const cspViolations: string[] = []

  const openPage = async (server: ServerProcess, options: { width?: number; colorScheme?: 'light' | 'dark' } = {}) => {
    const context = await browser.newContext({
      viewport: { width: options.width ?? 1024, height: 812 },
      colorScheme: options.colorScheme ?? 'light',
    })
    const page = await context.newPage()
    page.setDefaultTimeout(timeout)
    page.on('console', (message) => {
      if (/content security policy/i.test(message.text())) cspViolations.push(message.text())
    })
    await page.goto(server.url)
    await page.getByRole('heading', { level: 1, name: 'Users' }).waitFor()
    return page
  }
  const usersTable = (page: Page) => page.getByRole('table', { name: 'Users' })
  const newUserForm = (page: Page) => page.getByRole('form', { name: 'New user' })
  const row = (page: Page, text: string) => usersTable(page).getByRole('row').filter({ hasText: text })

  before(async () => {
    if (!existsSync(join(projectRoot, 'dist/web/index.html'))) throw new Error('the page is not built: run `npm run build`')
    // The embedded database takes a while to start on a busy machine; the token server uses PostgreSQL.
    const dataDir = await mkdtemp(join(tmpdir(), 'fullstack-web-'))
    dataDirs.push(dataDir)
    embedded = await startServerProcess({ DATA_DIR: dataDir, LOG_LEVEL: 'warn' }, { readyTimeoutMs: 120_000 })
    database = await createTestDatabase()
    locked = await startServerProcess({ DATABASE_URL: database.url, API_TOKEN: apiToken, LOG_LEVEL: 'warn' })
    browser = await launchChromium()
  })

  after(async () => {
    await browser?.close()
    await embedded?.stop()
    await locked?.stop()
    await database?.drop()
    for (const dir of dataDirs) await rm(dir, { recursive: true, force: true })
  })

  it('serves / with revalidation, hashed assets immutable and precompressed, a strict CSP on / only, JSON to curl', async () => {
    const page = await fetch(`${embedded.url}/`, { headers: { 'accept-encoding': 'br' } })
    assert.equal(page.status, 200)
    assert.equal(page.headers.get('content-encoding'), 'br')
    assert.equal(page.headers.get('cache-control'), 'no-cache')
    const csp = page.headers.get('content-security-policy') ?? ''
    assert.match(csp, /script-src 'self';/)
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/)
    const html = await page.text()
    const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((match) => match[1]!)
    assert.equal(assets.length, 2, html)
    for (const asset of assets) {
      assert.match(asset, /-[\w-]{8}\.(js|css)$/, 'content-hashed name')
      for (const encoding of ['br', 'gzip']) {
        const answer = await fetch(`${embedded.url}${asset}`, { headers: { 'accept-encoding': encoding } })
        assert.equal(answer.status, 200)
        assert.equal(answer.headers.get('content-encoding'), encoding)
        assert.equal(answer.headers.get('cache-control'), 'public, max-age=31536000, immutable')
        assert.match(answer.headers.get('vary') ?? '', /accept-encoding/i)
      }
    }
    // fetch() would add `cache-control: no-cache` to a conditional request unless one is given.
    const revalidated = await fetch(`${embedded.url}/`, {
      headers: { 'if-none-match': page.headers.get('etag')!, 'accept-encoding': 'br', 'cache-control': 'max-age=0' },
    })
    assert.equal(revalidated.status, 304)

    const docs = await fetch(`${embedded.url}/docs/`)
    assert.equal(docs.status, 200)
    assert.notEqual(docs.headers.get('content-security-policy'), csp, '/docs keeps its own policy')
    const users = await fetch(`${embedded.url}/users`, { headers: { accept: '*/*' } })
    assert.match(users.headers.get('content-type') ?? '', /^application\/json/)
    assert.ok(Array.isArray(await users.json()))
  })

  it('creates with the keyboard alone, shows a conflict, searches, edits in place, deletes after Cancel then Delete', async () => {
    const page = await openPage(embedded)
    await page.keyboard.press('Tab')
    await page.keyboard.type('Ada Lovelace')
    await page.keyboard.press('Tab')
    await page.keyboard.type('Ada@Example.com')
    await page.keyboard.press('Enter')
    await row(page, 'ada@example.com').waitFor()
    assert.equal(await page.getByRole('status').textContent(), 'Created Ada Lovelace.')

    const form = newUserForm(page)
    await form.getByLabel('Name').fill('Ada Again')
    await form.getByLabel('Email').fill('ADA@example.com')
    await form.getByRole('button', { name: 'Create user' }).click()
    await form.getByRole('alert').filter({ hasText: 'already has this email' }).waitFor()

    await createUser(embedded, 'Grace Hopper', 'grace@navy.example')
    await page.getByRole('searchbox', { name: 'Search' }).fill('LOVEL')
    await usersTable(page).getByRole('row').nth(1).filter({ hasText: 'Ada Lovelace' }).waitFor()
    await row(page, 'Grace Hopper').waitFor({ state: 'detached' })
    assert.equal(await usersTable(page).getByRole('row').count(), 2)
    await page.getByRole('searchbox', { name: 'Search' }).fill('')
    await row(page, 'Grace Hopper').waitFor()

    await page.getByRole('button', { name: 'Edit Ada Lovelace' }).click()
    const editName = usersTable(page).getByLabel('Name')
    await editName.fill('Ada King')
    await usersTable(page).getByLabel('Email').fill('ada.king@example.com')
    await usersTable(page).getByRole('button', { name: 'Save' }).click()
    await row(page, 'ada.king@example.com').filter({ hasText: 'Ada King' }).waitFor()
    assert.equal(await page.getByRole('status').textContent(), 'Saved Ada King.')

    await page.getByRole('button', { name: 'Delete Ada King' }).click()
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click()
    await page.getByRole('dialog').waitFor({ state: 'detached' })
    await page.getByRole('button', { name: 'Delete Ada King' }).click()
    await page.keyboard.press('Escape')
    await page.getByRole('dialog').waitFor({ state: 'detached' })
    assert.equal(await row(page, 'Ada King').count(), 1, 'Cancel and Escape keep the user')
    await page.getByRole('button', { name: 'Delete Ada King' }).click()
    await page.getByRole('dialog').getByRole('button', { name: 'Delete', exact: true }).click()
    await row(page, 'Ada King').waitFor({ state: 'detached' })
    assert.deepEqual(await fetch(`${embedded.url}/users?q=ada`).then((answer) => answer.json()), [])
    await page.context().close()
  })

  it('pages through the list with Next page and Previous page', async () => {
    for (let i = 1; i <= 22; i++) await createUser(embedded, `Pager ${String(i).padStart(2, '0')}`, `pager${i}@example.com`)
    const page = await openPage(embedded)
    const previous = page.getByRole('button', { name: 'Previous page' })
    const next = page.getByRole('button', { name: 'Next page' })
    await row(page, 'Pager 01').waitFor()
    assert.equal(await previous.isDisabled(), true)
    await next.click()
    await row(page, 'Pager 22').waitFor()
    assert.equal(await row(page, 'Pager 01').count(), 0)
    assert.equal(await next.isDisabled(), true)
    await previous.click()
    await row(page, 'Pager 01').waitFor()
    await page.context().close()
  })

  it('shows a user created elsewhere without a reload, polling with ETag revalidation', async () => {
    const page = await openPage(embedded)
    const conditional: boolean[] = []
    page.on('request', (request) => {
      if (new URL(request.url()).pathname !== '/users') return
      request.allHeaders().then((headers) => conditional.push('if-none-match' in headers), () => {})
    })
    await row(page, 'Grace Hopper').waitFor()
    const grace = (await fetch(`${embedded.url}/users?q=grace`).then((answer) => answer.json())) as { id: number }[]
    const patched = await fetch(`${embedded.url}/users/${grace[0]!.id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Grace Brewster Hopper' }),
    })
    assert.equal(patched.status, 200)
    await row(page, 'Grace Brewster Hopper').waitFor()

    await page.getByRole('searchbox', { name: 'Search' }).fill('made by')
    await usersTable(page).getByText('No user’s name or email contains').waitFor()
    await createUser(embedded, 'Made By Curl', 'curl@example.com')
    await row(page, 'curl@example.com').waitFor()
    assert.equal(page.url(), `${embedded.url}/`)
    // Chromium shows a 304 to the page (and to Playwright) as the cached 200, so look at what it sent.
    const isPoll = (request: { url(): string }) => new URL(request.url()).pathname === '/users'
    await page.waitForRequest(isPoll, { timeout })
    assert.ok(conditional.at(-1), `polls revalidate with If-None-Match (${conditional})`)
    await page.context().close()
  })

  it('passes axe-core in light and dark with no serious or critical violations, and is readable at 375 px', async () => {
    const axeSource = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')
    await mkdir(resultsDir, { recursive: true })
    for (const colorScheme of ['light', 'dark'] as const) {
      const page = await openPage(embedded, { width: 375, colorScheme })
      await row(page, 'Pager 01').waitFor()
      const widths = (await page.evaluate('({ scroll: document.documentElement.scrollWidth, view: innerWidth })')) as {
        scroll: number
        view: number
      }
      assert.ok(widths.scroll <= widths.view, `no sideways scrolling at 375 px (${JSON.stringify(widths)})`)
      await page.screenshot({ path: join(resultsDir, `web-375-${colorScheme}.png`) })

      // page.evaluate runs outside the page's CSP, which (rightly) refuses an injected script tag.
      await page.evaluate(axeSource)
      const audit = async () => {
        const result = (await page.evaluate('axe.run(document, { resultTypes: ["violations"] })')) as AxeResult
        return result.violations.filter((violation) => violation.impact === 'serious' || violation.impact === 'critical')
      }
      assert.deepEqual(await audit(), [], `${colorScheme}: page`)
      await page.getByRole('button', { name: 'Delete Pager 01' }).click()
      await page.getByRole('dialog').waitFor()
      assert.deepEqual(await audit(), [], `${colorScheme}: delete dialog`)
      await page.context().close()
    }
    assert.deepEqual(cspViolations, [])
  })

  it('loads the page without the token when reads need it too, and asks for it to list the users', async () => {
    const readsLocked = await startServerProcess({ DATABASE_URL: database.url, API_TOKEN: apiToken, API_TOKEN_READS: 'true', LOG_LEVEL: 'warn' })
    try {
      await createUser(readsLocked, 'Private Reader', 'private@example.com', apiToken)
      assert.equal((await fetch(`${readsLocked.url}/users`)).status, 401)
      const page = await openPage(readsLocked)
      const dialog = page.getByRole('dialog')
      await dialog.getByLabel('API token').fill(apiToken)
      await dialog.getByRole('button', { name: 'Save token' }).click()
      await row(page, 'Private Reader').waitFor()
      await page.context().close()
    } finally {
      await readsLocked.stop()
    }
  })

  it('asks for the API token when a write answers 401, keeps it for the session and retries', async () => {
    await createUser(locked, 'Already There', 'there@example.com', apiToken)
    const page = await openPage(locked)
    await row(page, 'Already There').waitFor()
    const form = newUserForm(page)
    await form.getByLabel('Name').fill('Token Holder')
    await form.getByLabel('Email').fill('holder@example.com')
    await form.getByRole('button', { name: 'Create user' }).click()
    const dialog = page.getByRole('dialog')
    await dialog.getByLabel('API token').fill(apiToken)
    await dialog.getByRole('button', { name: 'Save token' }).click()
    await row(page, 'holder@example.com').waitFor()
    assert.equal(await page.evaluate("sessionStorage.getItem('users-api-token')"), apiToken)
    assert.equal(await page.evaluate('localStorage.length'), 0)

    await page.getByRole('button', { name: 'Delete Token Holder' }).click()
    await page.getByRole('dialog').getByRole('button', { name: 'Delete', exact: true }).click()
    await row(page, 'holder@example.com').waitFor({ state: 'detached' })
    assert.equal(await page.getByRole('textbox', { name: 'API token' }).count(), 0, 'the saved token is used without asking')
    await page.context().close()
  })
})
