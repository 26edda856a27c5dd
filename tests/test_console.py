"""The browser console (lookalike.gateway, console/) in a real headless
Chromium, Debian's, driven through Debian's chromedriver by Selenium (no driver
download): upload a photo and see its product first, type words, filter by
price, "more like this", and a broken file shows the server's error. The
catalog is the demo's (lookalike.demo) encoded by the tiny random CLIP, so the
expected order comes from the same queries over gRPC.

With LOOKALIKE_CONSOLE_SCREENSHOT=1 the photo search's page is saved as
docs/console.png (the README shows it)."""

import os
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from conftest import start_demo_server
from lookalike.client import Client
from lookalike.demo import demo_products
from lookalike.service.security import TlsConfig
from lookalike.v1 import filter_pb2, search_pb2
from test_service_operations import pki  # noqa: F401 - the throwaway CA and certificates, a fixture

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT = Path(__file__).parent.parent / "docs" / "console.png"
READER_KEY = "r" * 24


def chromium(*flags):
    """Debian's Chromium, headless, through Debian's chromedriver (the path set: no Selenium Manager)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000", "--force-device-scale-factor=1", *flags):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def wait(browser, condition, seconds=60):
    return WebDriverWait(browser, seconds).until(condition)


def shown_ids(browser):
    return [int(card.get_attribute("data-id")) for card in browser.find_elements(By.CSS_SELECTOR, "#results .hit")]


def search_and_wait(browser, start):
    """Runs ``start`` (which starts a search) and waits for the page to show its answer."""
    browser.execute_script("document.getElementById('summary').textContent = ''")
    start()
    wait(browser, lambda b: b.find_element(By.ID, "summary").text not in ("", "Searching…")
         or b.find_element(By.ID, "error").is_displayed())


def grpc_ids(server, **search):
    with Client(server.address) as client:
        return [h.id for h in client.search(k=24, **search).hits]


def open_console(browser, server):
    browser.get(server.gateway.url)
    wait(browser, lambda b: "24 products" in b.find_element(By.ID, "stats-line").text)


def test_a_photo_search_shows_its_product_first(browser, demo_server, tmp_path):
    open_console(browser, demo_server)
    photo = tmp_path / "gift-crop.jpg"
    photo.write_bytes(demo_products()[9].image)   # product 10, a crop of the gift box photo
    search_and_wait(browser, lambda: browser.find_element(By.ID, "photo").send_keys(str(photo)))
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert shown_ids(browser) == grpc_ids(demo_server, image=photo.read_bytes())
    assert shown_ids(browser)[0] == 10
    first = browser.find_element(By.CSS_SELECTOR, "#results .hit")
    assert "score 1.0" in first.text or "score 0.99" in first.text
    wait(browser, lambda b: b.execute_script(
        "return [...document.querySelectorAll('#results .hit img')].every(i => i.complete && i.naturalWidth > 0)"
        " && document.querySelectorAll('#results .hit img').length === 24"))
    assert browser.find_element(By.ID, "scan-status").text == browser.find_element(By.ID, "reindex-status").text \
        == "none"  # no duplicate scan, no re-index yet
    plan = browser.find_element(By.ID, "plan").text
    assert "plan" in plan and "encode" in plan and "server total" in plan
    if os.environ.get("LOOKALIKE_CONSOLE_SCREENSHOT"):
        browser.save_screenshot(str(SCREENSHOT))


def test_words_a_price_filter_and_more_like_this(browser, demo_server):
    open_console(browser, demo_server)
    words = browser.find_element(By.ID, "text")
    search_and_wait(browser, lambda: words.send_keys("temple poster", Keys.ENTER))
    assert shown_ids(browser) == grpc_ids(demo_server, text="temple poster")

    search_and_wait(browser, lambda: browser.find_element(By.ID, "filter-price-max").send_keys("60", Keys.ENTER))
    cheap = filter_pb2.Filter(must=[filter_pb2.Condition(range=filter_pb2.Range(attribute="price", lte=60))])
    expected = grpc_ids(demo_server, text="temple poster", filter=cheap)
    assert shown_ids(browser) == expected and len(expected) == 4
    prices = [float(dd.text) for dd in browser.find_elements(By.CSS_SELECTOR, "#results dd[data-attribute=price]")]
    assert len(prices) == 4 and max(prices) <= 60

    first = shown_ids(browser)[0]
    search_and_wait(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#results .hit .more-like-this").click())
    assert shown_ids(browser) == grpc_ids(demo_server, product_id=first, filter=cheap)
    assert first not in shown_ids(browser)


def test_a_photo_and_words_weighted_by_the_slider(browser, demo_server, tmp_path):
    open_console(browser, demo_server)
    photo = tmp_path / "temple.jpg"
    photo.write_bytes(demo_products()[14].image)   # product 15
    search_and_wait(browser, lambda: browser.find_element(By.ID, "photo").send_keys(str(photo)))
    browser.find_element(By.ID, "text").send_keys("blue gift box")
    browser.execute_script("const w = document.getElementById('weight'); w.value = 70;"
                           "w.dispatchEvent(new Event('input'))")
    assert browser.find_element(By.ID, "weight-value").text == "70 / 30"
    search_and_wait(browser, lambda: browser.find_element(By.ID, "search").click())
    with Client(demo_server.address) as client:
        hybrid = search_pb2.HybridQuery(image=photo.read_bytes(), text="blue gift box", image_weight=0.7,
                                        text_weight=0.3)
        expected = client.stub.Search(search_pb2.SearchRequest(query=search_pb2.Query(hybrid=hybrid), k=24),
                                      timeout=30)
        hybrid.image_weight = hybrid.text_weight = 0.5
        evenly = client.stub.Search(search_pb2.SearchRequest(query=search_pb2.Query(hybrid=hybrid), k=24),
                                    timeout=30)
    assert shown_ids(browser) == [h.id for h in expected.hits] != [h.id for h in evenly.hits]  # the weights count
    browser.find_element(By.ID, "clear-photo").click()


def test_pages_and_a_keyword_filter(browser, demo_server):
    from selenium.webdriver.support.ui import Select

    open_console(browser, demo_server)
    Select(browser.find_element(By.ID, "k")).select_by_visible_text("12")
    search_and_wait(browser, lambda: browser.find_element(By.ID, "text").send_keys("gift", Keys.ENTER))
    with Client(demo_server.address) as client:
        first = client.search(text="gift", k=12)
        second = client.search(text="gift", k=12, page_token=first.next_page_token)
    assert shown_ids(browser) == [h.id for h in first.hits]
    search_and_wait(browser, lambda: browser.find_element(By.ID, "next-page").click())
    assert shown_ids(browser) == [h.id for h in second.hits]
    assert browser.find_element(By.CSS_SELECTOR, "#results .hit .score").text.startswith("#13 ")

    kinds = browser.find_element(By.ID, "filter-category")
    search_and_wait(browser, lambda: kinds.send_keys("mug, poster", Keys.ENTER))
    mugs_and_posters = filter_pb2.Filter(must=[filter_pb2.Condition(match=filter_pb2.Match(
        attribute="category", any_of=filter_pb2.KeywordList(values=["mug", "poster"])))])
    expected = grpc_ids(demo_server, text="gift", filter=mugs_and_posters)
    assert shown_ids(browser) == expected and len(expected) == 3  # the temple mug, its poster, the uniform poster


def test_a_broken_file_shows_the_servers_error(browser, demo_server, tmp_path):
    open_console(browser, demo_server)
    broken = tmp_path / "holiday.jpg"
    broken.write_bytes(b"these bytes are no photo")
    search_and_wait(browser, lambda: browser.find_element(By.ID, "photo").send_keys(str(broken)))
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed()
    with Client(demo_server.address) as client:
        try:
            client.search(image=broken.read_bytes(), k=24)
        except Exception as e:  # the same upload over gRPC: the message the page must show
            expected = f"{e.code().name}: {e.details()}"
    assert error.text == expected and expected.startswith("INVALID_ARGUMENT: query.image")


def test_the_console_sends_the_api_key(browser, tiny_clip_bundle, tmp_path):
    server = start_demo_server(tiny_clip_bundle, tmp_path, api_keys={READER_KEY: "read", "w" * 24: "write"})
    try:
        browser.get(server.gateway.url)
        browser.execute_script("localStorage.removeItem('lookalike-api-key')")
        browser.get(server.gateway.url)
        wait(browser, lambda b: b.find_element(By.ID, "error").is_displayed())
        assert browser.find_element(By.ID, "error").text.startswith("UNAUTHENTICATED: ")
        key = browser.find_element(By.ID, "api-key")
        key.send_keys(READER_KEY, Keys.TAB)  # the change event stores it and reloads the catalog
        wait(browser, lambda b: "24 products" in b.find_element(By.ID, "stats-line").text)
        wait(browser, lambda b: b.find_element(By.ID, "reindex-status").text
             == "shown to an API key with the write scope")   # the AdminService needs the write scope
        search_and_wait(browser, lambda: browser.find_element(By.ID, "text").send_keys("gift box", Keys.ENTER))
        assert len(shown_ids(browser)) == 24
        wait(browser, lambda b: b.execute_script(
            "return document.querySelectorAll('#results .hit img').length === 24"))
        browser.get(server.gateway.url)  # the key is remembered
        wait(browser, lambda b: "24 products" in b.find_element(By.ID, "stats-line").text)
    finally:
        browser.execute_script("localStorage.removeItem('lookalike-api-key')")
        server.stop(grace=1)


def test_the_console_works_over_https(tiny_clip_bundle, tmp_path, pki):  # noqa: F811
    folder, files = pki
    server = start_demo_server(tiny_clip_bundle, tmp_path / "data", tls_root=files["ca.pem"],
                               tls=TlsConfig(cert=str(folder / "server.pem"), key=str(folder / "server.key")))
    browser = chromium("--ignore-certificate-errors")  # the throwaway CA is not in Chromium's trust store
    try:
        port = server.gateway.address.rsplit(":", 1)[1]
        browser.get(f"https://localhost:{port}/")
        wait(browser, lambda b: "24 products" in b.find_element(By.ID, "stats-line").text)
        photo = tmp_path / "flower.jpg"
        photo.write_bytes(demo_products()[20].image)   # product 21
        search_and_wait(browser, lambda: browser.find_element(By.ID, "photo").send_keys(str(photo)))
        assert shown_ids(browser)[0] == 21
    finally:
        browser.quit()
        server.stop(grace=1)
