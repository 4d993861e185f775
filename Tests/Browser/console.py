#!/usr/bin/env python3
"""The web console in a real browser: headless Chromium (Debian's chromium and chromium-driver)
driven by Selenium. Signs in (a wrong token first), creates a task through the form, watches it
complete and reads its logs, picks namespaces (a task made in team-a beforehand shows in team-a
and in every namespace, not in default), drains a proplet and ends the drain from the fleet page, and checks
that nothing was loaded from another origin and the browser reported no error (a
Content-Security-Policy violation is one). Screenshots go to --screenshots. Run by
Tests/EndToEndTests/ConsoleTests.swift against real processes; exits non-zero on a failure."""
import argparse
import os
import sys
import traceback
from urllib.parse import urlparse

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

parser = argparse.ArgumentParser()
parser.add_argument("--url", required=True, help="the console, http://HOST:PORT/ui")
parser.add_argument("--token", required=True)
parser.add_argument("--image", required=True)
parser.add_argument("--proplet", required=True)
parser.add_argument("--screenshots", required=True)
args = parser.parse_args()
os.makedirs(args.screenshots, exist_ok=True)
origin = "{0.scheme}://{0.netloc}".format(urlparse(args.url))

options = Options()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
             "--no-first-run", "--disable-extensions", "--disable-background-networking", "--disable-component-update"]:
    options.add_argument(flag)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
# The pages re-render as they poll: an element found an instant ago may be replaced before it is
# read, so a wait tries again on a stale element as on a missing one.
wait = WebDriverWait(driver, 60, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))


def shot(name):
    driver.save_screenshot(os.path.join(args.screenshots, name + ".png"))


def text_of(css):
    return driver.find_element(By.CSS_SELECTOR, css).text


def columns_aligned():
    """Whether every table's first row has a cell under each header, at its left edge."""
    return driver.execute_script("""
        return [...document.querySelectorAll('main table')].every((t) => {
          const th = t.querySelectorAll('thead th');
          const tr = t.querySelector('tbody tr');
          if (!tr) return true;
          return tr.children.length === th.length && [...tr.children].every((td, i) =>
            Math.abs(td.getBoundingClientRect().left - th[i].getBoundingClientRect().left) < 2);
        });""")


def step(what):
    print("console: " + what, flush=True)


try:
    step("sign in with a wrong token: refused")
    driver.get(args.url)
    wait.until(EC.presence_of_element_located((By.ID, "token"))).send_keys("not-a-token")
    driver.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    wait.until(lambda d: "refused" in d.find_element(By.CSS_SELECTOR, "main .error").text)
    shot("sign-in")

    step("sign in with the token")
    field = wait.until(EC.presence_of_element_located((By.ID, "token")))
    field.clear()
    field.send_keys(args.token)
    driver.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    wait.until(EC.presence_of_element_located((By.ID, "new-task")))
    assert driver.execute_script("return sessionStorage.getItem('propeller-token')") == args.token
    assert driver.execute_script("return localStorage.length") == 0, "the token must not outlive the tab"

    step("create a task through the form and watch it complete")
    driver.find_element(By.ID, "new-name").send_keys("from-the-console")
    driver.find_element(By.ID, "new-image").send_keys(args.image)
    driver.find_element(By.ID, "new-command").send_keys("echo hello from the console; sleep 3; echo done")
    driver.find_element(By.CSS_SELECTOR, "#new-task button[type=submit]").click()
    wait.until(lambda d: "#/tasks/" in d.current_url)
    wait.until(lambda d: text_of('dd[data-field="state"]') == "running")
    shot("task-running")
    wait.until(lambda d: text_of('dd[data-field="state"]') == "completed")
    wait.until(lambda d: "hello from the console" in text_of("#task-logs") and "done" in text_of("#task-logs"))
    assert text_of('dd[data-field="exit-code"]') == "0", text_of('dd[data-field="exit-code"]')
    assert driver.find_elements(By.CSS_SELECTOR, "#task-usage svg"), "usage graphs"
    shot("task")

    step("the task list shows it, and filters by state and name")
    driver.get(args.url + "#/tasks")
    wait.until(lambda d: "from-the-console" in text_of("main table"))
    assert columns_aligned(), "the task list's cells sit under their headers"
    driver.find_element(By.ID, "name-filter").send_keys("no-such-name")
    wait.until(lambda d: "from-the-console" not in text_of("main table"))
    shot("tasks")

    step("the namespace picker: team-a's task shows in team-a and in all namespaces, not in default")
    from selenium.webdriver.support.ui import Select

    def pick(namespace):
        Select(wait.until(EC.element_to_be_clickable((By.ID, "namespace")))).select_by_value(namespace)

    driver.refresh()  # the name filter typed above goes
    wait.until(lambda d: "from-the-console" in text_of("main table"))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#namespace option")) >= 3)
    values = [o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, "#namespace option")]
    assert "team-a" in values and "default" in values and "*" in values, values
    assert "in-team-a" not in text_of("main table")
    pick("team-a")
    wait.until(lambda d: "in-team-a" in text_of("main table") and "from-the-console" not in text_of("main table"))
    shot("namespace")
    pick("*")
    wait.until(lambda d: "in-team-a" in text_of("main table") and "from-the-console" in text_of("main table"))
    assert columns_aligned(), "the task list's cells sit under their headers"
    shot("tasks-all")
    namespaces = [e.text for e in driver.find_elements(By.CSS_SELECTOR, 'tr[data-task] td[data-field="namespace"]')]
    assert "team-a" in namespaces and "default" in namespaces, namespaces
    pick("default")
    wait.until(lambda d: "in-team-a" not in text_of("main table") and "from-the-console" in text_of("main table"))

    step("drain the proplet from the fleet page, then open it again")
    driver.get(args.url + "#/proplets")
    row = 'tr[data-proplet="%s"]' % args.proplet
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, row)))
    driver.find_element(By.CSS_SELECTOR, row + " button[data-action=drain]").click()
    wait.until(lambda d: "ineligible" in text_of(row))
    assert columns_aligned(), "the fleet's cells sit under their headers"
    shot("fleet")
    # With nothing running there the drain is complete at once and the proplet stays
    # ineligible: it is opened again with "Make eligible" ("Cancel drain" while one runs).
    driver.find_element(By.XPATH, "//tr[@data-proplet='%s']//button[text()='Cancel drain' or text()='Make eligible']" % args.proplet).click()
    wait.until(lambda d: "ineligible" not in text_of(row))

    step("nothing came from another origin, and the browser reported no error")
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    foreign = [r for r in resources if not r.startswith(origin)]
    assert not foreign, "loaded from elsewhere: %s" % foreign
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "401" not in e["message"]]
    assert not errors, "browser errors: %s" % errors
    step("ok")
except Exception:
    traceback.print_exc()
    try:
        shot("failure")
        print("console: page at the failure:\n" + driver.find_element(By.TAG_NAME, "body").text[:3000])
        print("console: browser log: %s" % driver.get_log("browser"))
    except Exception:
        pass
    sys.exit(1)
finally:
    driver.quit()
