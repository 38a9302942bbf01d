"""Per-country facts the sandbox's organisations are built from: tax regime, base currency, chart of accounts.

This module owns static reference data only: which tax rates a new Xero organisation in AU, NZ, GB, US or
CA starts with, its default chart of accounts (including Xero's system accounts, which the API marks with
`SystemAccount` and which cannot be deleted or posted to by manual journals), its financial year and
time zone. It must not touch the store or generate random data; `generate` does that.

Sources: Xero's default charts of accounts as shipped with new organisations
(https://central.xero.com/s/article/Default-chart-of-accounts), the `Account`, `TaxRate` and `Organisation`
schemas and enums of `xero_accounting.yaml` (`AccountType`, `SystemAccount`, `ReportTaxType`, `Version`,
`TimeZone`), and https://developer.xero.com/documentation/api/accounting/types#tax-rates for the system
tax types of each region. Codes and names follow Xero's AU chart and are renamed per region where Xero
names them differently (GST/VAT/Sales Tax); Xero's US and CA charts use four-digit codes in some editions,
which the sandbox does not model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

COUNTRIES: tuple[str, ...] = ("AU", "NZ", "GB", "US", "CA")

# Account type -> Class, as Xero derives the read-only `Class` from `Type`.
ACCOUNT_CLASS: dict[str, str] = {
    "BANK": "ASSET",
    "CURRENT": "ASSET",
    "FIXED": "ASSET",
    "INVENTORY": "ASSET",
    "NONCURRENT": "ASSET",
    "PREPAYMENT": "ASSET",
    "CURRLIAB": "LIABILITY",
    "LIABILITY": "LIABILITY",
    "TERMLIAB": "LIABILITY",
    "PAYG": "LIABILITY",
    "EQUITY": "EQUITY",
    "DIRECTCOSTS": "EXPENSE",
    "EXPENSE": "EXPENSE",
    "OVERHEADS": "EXPENSE",
    "DEPRECIATN": "EXPENSE",
    "REVENUE": "REVENUE",
    "SALES": "REVENUE",
    "OTHERINCOME": "REVENUE",
}

# Xero's reporting-code roots per class (the `ReportingCode`/`ReportingCodeName` pair on Accounts).
REPORTING_CODE: dict[str, tuple[str, str]] = {
    "ASSET": ("ASS", "Assets"),
    "LIABILITY": ("LIA", "Liabilities"),
    "EQUITY": ("EQU", "Equity"),
    "EXPENSE": ("EXP", "Expenses"),
    "REVENUE": ("REV", "Revenue"),
}


@dataclass(frozen=True)
class TaxRateSpec:
    tax_type: str
    name: str
    rate: float  # percent
    report_tax_type: str
    components: tuple[tuple[str, float], ...] = ()  # (name, rate) when not a single component
    applies_to: tuple[bool, bool, bool, bool, bool] = (True, True, True, True, True)  # assets equity exp liab rev

    def component_list(self) -> list[tuple[str, float]]:
        return list(self.components) if self.components else [(self.name.split(" (")[0], self.rate)]


@dataclass(frozen=True)
class AccountSpec:
    code: str
    name: str
    type: str
    tax: str  # "sales" | "purchases" | "exempt" | "none": resolved per country
    system_account: str | None = None
    description: str = ""
    enable_payments: bool = False
    show_in_expense_claims: bool = False


@dataclass(frozen=True)
class CountryProfile:
    code: str
    base_currency: str
    version: str  # Organisation.Version
    timezone: str  # Organisation.Timezone
    financial_year_end: tuple[int, int]  # (day, month)
    sales_tax_basis: str
    sales_tax_period: str
    tax_label: str  # what the tax liability account is called
    sales_tax: str  # default TaxType on sales lines
    purchases_tax: str  # default TaxType on purchase lines
    exempt_sales_tax: str
    exempt_purchases_tax: str
    none_tax: str  # balance-sheet and bank lines
    tax_rates: tuple[TaxRateSpec, ...]
    foreign_currencies: tuple[tuple[str, float], ...]  # (code, units of foreign currency per 1 base unit)
    cities: tuple[tuple[str, str, str], ...]  # (city, region, postal code)
    phone_country: str
    legal_suffix: str
    extra_sales_taxes: tuple[str, ...] = ()  # other output tax types used on some sales lines
    tax_number_label: str = ""
    currency_names: dict[str, str] = field(default_factory=dict)

    def tax_type_for(self, kind: str) -> str:
        return {
            "sales": self.sales_tax,
            "purchases": self.purchases_tax,
            "exempt_sales": self.exempt_sales_tax,
            "exempt_purchases": self.exempt_purchases_tax,
            "none": self.none_tax,
        }[kind]

    def rate_of(self, tax_type: str) -> float:
        for spec in self.tax_rates:
            if spec.tax_type == tax_type:
                return spec.rate
        raise KeyError(tax_type)

    def tax_name(self, tax_type: str) -> str:
        for spec in self.tax_rates:
            if spec.tax_type == tax_type:
                return spec.name
        raise KeyError(tax_type)


CURRENCY_NAMES: dict[str, str] = {
    "AUD": "Australian Dollar",
    "NZD": "New Zealand Dollar",
    "GBP": "British Pound",
    "USD": "United States Dollar",
    "CAD": "Canadian Dollar",
    "EUR": "Euro",
}

_NO_ASSETS = (False, True, True, True, True)

AU = CountryProfile(
    code="AU",
    base_currency="AUD",
    version="AU",
    timezone="AUSEASTERNSTANDARDTIME",
    financial_year_end=(30, 6),
    sales_tax_basis="ACCRUALS",
    sales_tax_period="QUARTERLY1",
    tax_label="GST",
    sales_tax="OUTPUT",
    purchases_tax="INPUT",
    exempt_sales_tax="EXEMPTOUTPUT",
    exempt_purchases_tax="EXEMPTEXPENSES",
    none_tax="BASEXCLUDED",
    tax_rates=(
        TaxRateSpec("OUTPUT", "GST on Income", 10.0, "OUTPUT"),
        TaxRateSpec("INPUT", "GST on Expenses", 10.0, "INPUT"),
        TaxRateSpec("CAPEXINPUT", "GST on Capital", 10.0, "CAPITALEXPENSESINPUT"),
        TaxRateSpec("EXEMPTOUTPUT", "GST Free Income", 0.0, "EXEMPTOUTPUT"),
        TaxRateSpec("EXEMPTEXPENSES", "GST Free Expenses", 0.0, "EXEMPTEXPENSES"),
        TaxRateSpec("EXEMPTCAPITAL", "GST Free Capital", 0.0, "EXEMPTCAPITAL"),
        TaxRateSpec("EXEMPTEXPORT", "GST Free Exports", 0.0, "EXEMPTEXPORT"),
        TaxRateSpec("INPUTTAXED", "Input Taxed", 0.0, "INPUTTAXED"),
        TaxRateSpec("BASEXCLUDED", "BAS Excluded", 0.0, "BASEXCLUDED"),
        TaxRateSpec("GSTONIMPORTS", "GST on Imports", 0.0, "GSTONIMPORTS", applies_to=_NO_ASSETS),
    ),
    foreign_currencies=(("USD", 0.66), ("NZD", 1.09)),
    cities=(
        ("Sydney", "NSW", "2000"),
        ("Melbourne", "VIC", "3000"),
        ("Brisbane", "QLD", "4000"),
        ("Perth", "WA", "6000"),
        ("Adelaide", "SA", "5000"),
        ("Hobart", "TAS", "7000"),
    ),
    phone_country="61",
    legal_suffix="Pty Ltd",
    extra_sales_taxes=("EXEMPTEXPORT",),
    tax_number_label="ABN",
)

NZ = CountryProfile(
    code="NZ",
    base_currency="NZD",
    version="NZ",
    timezone="NEWZEALANDSTANDARDTIME",
    financial_year_end=(31, 3),
    sales_tax_basis="INVOICE",
    sales_tax_period="2MONTHLY",
    tax_label="GST",
    sales_tax="OUTPUT2",
    purchases_tax="INPUT2",
    exempt_sales_tax="ZERORATED",
    exempt_purchases_tax="NONE",
    none_tax="NONE",
    tax_rates=(
        TaxRateSpec("OUTPUT2", "15% GST on Income", 15.0, "OUTPUT"),
        TaxRateSpec("INPUT2", "15% GST on Expenses", 15.0, "INPUT"),
        TaxRateSpec("ZERORATED", "Zero Rated", 0.0, "EXEMPTOUTPUT"),
        TaxRateSpec("NONE", "No GST", 0.0, "NONE"),
        TaxRateSpec("GSTONIMPORTS", "GST on Imports", 0.0, "GSTONIMPORTS", applies_to=_NO_ASSETS),
    ),
    foreign_currencies=(("AUD", 0.92), ("USD", 0.60)),
    cities=(
        ("Auckland", "Auckland", "1010"),
        ("Wellington", "Wellington", "6011"),
        ("Christchurch", "Canterbury", "8011"),
        ("Dunedin", "Otago", "9016"),
        ("Tauranga", "Bay of Plenty", "3110"),
    ),
    phone_country="64",
    legal_suffix="Limited",
    tax_number_label="GST number",
)

GB = CountryProfile(
    code="GB",
    base_currency="GBP",
    version="UK",
    timezone="GMTSTANDARDTIME",
    financial_year_end=(31, 3),
    sales_tax_basis="ACCRUAL",
    sales_tax_period="QUARTERLY",
    tax_label="VAT",
    sales_tax="OUTPUT2",
    purchases_tax="INPUT2",
    exempt_sales_tax="EXEMPTOUTPUT",
    exempt_purchases_tax="EXEMPTINPUT",
    none_tax="NONE",
    tax_rates=(
        TaxRateSpec("OUTPUT2", "20% (VAT on Income)", 20.0, "OUTPUT"),
        TaxRateSpec("INPUT2", "20% (VAT on Expenses)", 20.0, "INPUT"),
        TaxRateSpec("RROUTPUT", "5% (VAT on Income)", 5.0, "OUTPUT"),
        TaxRateSpec("RRINPUT", "5% (VAT on Expenses)", 5.0, "INPUT"),
        TaxRateSpec("ZERORATEDOUTPUT", "Zero Rated Income", 0.0, "OUTPUT"),
        TaxRateSpec("ZERORATEDINPUT", "Zero Rated Expenses", 0.0, "INPUT"),
        TaxRateSpec("EXEMPTOUTPUT", "Exempt Income", 0.0, "EXEMPTOUTPUT"),
        TaxRateSpec("EXEMPTINPUT", "Exempt Expenses", 0.0, "EXEMPTINPUT"),
        TaxRateSpec("ECZROUTPUTSERVICES", "20% (VAT on EC Services)", 0.0, "ECOUTPUTSERVICES"),
        TaxRateSpec("NONE", "No VAT", 0.0, "NONE"),
    ),
    foreign_currencies=(("EUR", 1.17), ("USD", 1.27)),
    cities=(
        ("London", "Greater London", "EC1A 1BB"),
        ("Manchester", "Greater Manchester", "M1 1AE"),
        ("Bristol", "Bristol", "BS1 4DJ"),
        ("Leeds", "West Yorkshire", "LS1 4AP"),
        ("Edinburgh", "Midlothian", "EH1 1YZ"),
    ),
    phone_country="44",
    legal_suffix="Ltd",
    extra_sales_taxes=("RROUTPUT", "ZERORATEDOUTPUT"),
    tax_number_label="VAT number",
)

# Xero US organisations use "Tax on Sales"/"Tax on Purchases"; user-defined rates get TAX001, TAX002, ...
# Sales tax in the US is not recoverable, so purchases default to "Tax Exempt" (NONE).
US = CountryProfile(
    code="US",
    base_currency="USD",
    version="US",
    timezone="EASTERNSTANDARDTIME",
    financial_year_end=(31, 12),
    sales_tax_basis="ACCRUAL",
    sales_tax_period="NONE",
    tax_label="Sales Tax",
    sales_tax="TAX001",
    purchases_tax="NONE",
    exempt_sales_tax="NONE",
    exempt_purchases_tax="NONE",
    none_tax="NONE",
    tax_rates=(
        TaxRateSpec("OUTPUT", "Tax on Sales", 0.0, "OUTPUT"),
        TaxRateSpec("INPUT", "Tax on Purchases", 0.0, "INPUT"),
        TaxRateSpec("NONE", "Tax Exempt", 0.0, "NONE"),
        TaxRateSpec("GSTONIMPORTS", "Sales Tax on Imports", 0.0, "GSTONIMPORTS", applies_to=_NO_ASSETS),
        TaxRateSpec(
            "TAX001",
            "New York City Sales Tax",
            8.875,
            "OUTPUT",
            components=(("NY State", 4.0), ("NYC", 4.5), ("MCTD", 0.375)),
        ),
        TaxRateSpec("TAX002", "Austin TX Sales Tax", 8.25, "OUTPUT", components=(("TX State", 6.25), ("Austin", 2.0))),
    ),
    foreign_currencies=(("CAD", 1.36), ("EUR", 0.92)),
    cities=(
        ("New York", "NY", "10001"),
        ("Austin", "TX", "78701"),
        ("Chicago", "IL", "60601"),
        ("Denver", "CO", "80202"),
        ("Portland", "OR", "97201"),
    ),
    phone_country="1",
    legal_suffix="LLC",
    extra_sales_taxes=("TAX002",),
    tax_number_label="EIN",
)

CA = CountryProfile(
    code="CA",
    base_currency="CAD",
    version="GLOBAL",
    timezone="EASTERNSTANDARDTIME",
    financial_year_end=(31, 12),
    sales_tax_basis="ACCRUAL",
    sales_tax_period="QUARTERLY",
    tax_label="GST/HST",
    sales_tax="OUTPUT",
    purchases_tax="INPUT",
    exempt_sales_tax="ZERORATEDOUTPUT",
    exempt_purchases_tax="NONE",
    none_tax="NONE",
    tax_rates=(
        TaxRateSpec("OUTPUT", "GST on Sales", 5.0, "OUTPUT"),
        TaxRateSpec("INPUT", "GST on Purchases", 5.0, "INPUT"),
        TaxRateSpec("TAX001", "HST (ON) on Sales", 13.0, "OUTPUT"),
        TaxRateSpec("TAX002", "HST (ON) on Purchases", 13.0, "INPUT"),
        TaxRateSpec("ZERORATEDOUTPUT", "Zero-rated Sales", 0.0, "OUTPUT"),
        TaxRateSpec("EXEMPTOUTPUT", "Exempt Sales", 0.0, "EXEMPTOUTPUT"),
        TaxRateSpec("NONE", "Tax Exempt", 0.0, "NONE"),
    ),
    foreign_currencies=(("USD", 0.73), ("EUR", 0.68)),
    cities=(
        ("Toronto", "ON", "M5H 2N2"),
        ("Vancouver", "BC", "V6B 1A1"),
        ("Montréal", "QC", "H2Y 1C6"),
        ("Calgary", "AB", "T2P 1J9"),
        ("Ottawa", "ON", "K1P 1J1"),
    ),
    phone_country="1",
    legal_suffix="Inc.",
    extra_sales_taxes=("TAX001",),
    tax_number_label="Business Number",
)

PROFILES: dict[str, CountryProfile] = {p.code: p for p in (AU, NZ, GB, US, CA)}


def profile(country: str) -> CountryProfile:
    try:
        return PROFILES[country.upper()]
    except KeyError:
        raise ValueError(f"unsupported country {country!r}; expected one of {', '.join(COUNTRIES)}") from None


# The default chart, after Xero's AU demo/default chart. `tax` is resolved per country.
DEFAULT_CHART: tuple[AccountSpec, ...] = (
    AccountSpec("090", "Business Bank Account", "BANK", "none", enable_payments=True),
    AccountSpec("091", "Business Savings Account", "BANK", "none", enable_payments=True),
    AccountSpec("200", "Sales", "REVENUE", "sales", description="Income from any normal business activity"),
    AccountSpec("260", "Other Revenue", "REVENUE", "sales", description="Any other income that does not relate"),
    AccountSpec("270", "Interest Income", "OTHERINCOME", "exempt_sales", description="Interest income"),
    AccountSpec("310", "Cost of Goods Sold", "DIRECTCOSTS", "purchases", description="Cost of goods sold"),
    AccountSpec("400", "Advertising", "OVERHEADS", "purchases", show_in_expense_claims=True),
    AccountSpec("404", "Bank Fees", "OVERHEADS", "exempt_purchases"),
    AccountSpec("408", "Cleaning", "OVERHEADS", "purchases", show_in_expense_claims=True),
    AccountSpec("412", "Consulting & Accounting", "EXPENSE", "purchases", show_in_expense_claims=True),
    AccountSpec("416", "Depreciation", "DEPRECIATN", "none"),
    AccountSpec("420", "Entertainment", "OVERHEADS", "exempt_purchases", show_in_expense_claims=True),
    AccountSpec("425", "Freight & Courier", "EXPENSE", "purchases", show_in_expense_claims=True),
    AccountSpec("429", "General Expenses", "OVERHEADS", "purchases", show_in_expense_claims=True),
    AccountSpec("433", "Insurance", "OVERHEADS", "purchases"),
    AccountSpec("437", "Interest Expense", "OVERHEADS", "exempt_purchases"),
    AccountSpec("441", "Legal expenses", "OVERHEADS", "purchases"),
    AccountSpec("445", "Light, Power, Heating", "OVERHEADS", "purchases", show_in_expense_claims=True),
    AccountSpec("449", "Motor Vehicle Expenses", "OVERHEADS", "purchases", show_in_expense_claims=True),
    AccountSpec("453", "Office Expenses", "OVERHEADS", "purchases", show_in_expense_claims=True),
    AccountSpec("461", "Printing & Stationery", "OVERHEADS", "purchases", show_in_expense_claims=True),
    AccountSpec("469", "Rent", "OVERHEADS", "purchases"),
    AccountSpec("473", "Repairs and Maintenance", "OVERHEADS", "purchases", show_in_expense_claims=True),
    AccountSpec("477", "Wages and Salaries", "EXPENSE", "none"),
    AccountSpec("485", "Subscriptions", "OVERHEADS", "purchases", show_in_expense_claims=True),
    AccountSpec("489", "Telephone & Internet", "OVERHEADS", "purchases", show_in_expense_claims=True),
    AccountSpec("493", "Travel - National", "OVERHEADS", "purchases", show_in_expense_claims=True),
    AccountSpec("494", "Travel - International", "OVERHEADS", "exempt_purchases", show_in_expense_claims=True),
    AccountSpec("497", "Bank Revaluations", "OVERHEADS", "none", system_account="BANKCURRENCYGAIN"),
    AccountSpec("498", "Unrealised Currency Gains", "OVERHEADS", "none", system_account="UNREALISEDCURRENCYGAIN"),
    AccountSpec("499", "Realised Currency Gains", "OVERHEADS", "none", system_account="REALISEDCURRENCYGAIN"),
    AccountSpec("505", "Income Tax Expense", "EXPENSE", "none"),
    AccountSpec("610", "Accounts Receivable", "CURRENT", "none", system_account="DEBTORS"),
    AccountSpec("620", "Prepayments", "CURRENT", "none"),
    AccountSpec("630", "Inventory", "INVENTORY", "none"),
    AccountSpec("710", "Office Equipment", "FIXED", "purchases"),
    AccountSpec("711", "Less Accumulated Depreciation on Office Equipment", "FIXED", "none"),
    AccountSpec("720", "Computer Equipment", "FIXED", "purchases"),
    AccountSpec("721", "Less Accumulated Depreciation on Computer Equipment", "FIXED", "none"),
    AccountSpec("800", "Accounts Payable", "CURRLIAB", "none", system_account="CREDITORS"),
    AccountSpec("801", "Unpaid Expense Claims", "CURRLIAB", "none", system_account="UNPAIDEXPCLM"),
    AccountSpec("803", "Wages Payable", "CURRLIAB", "none", system_account="WAGEPAYABLES"),
    AccountSpec("820", "{tax_label}", "CURRLIAB", "none", system_account="GST"),
    AccountSpec("830", "Income Tax Payable", "CURRLIAB", "none"),
    AccountSpec("840", "Historical Adjustment", "CURRLIAB", "none", system_account="HISTORICAL"),
    AccountSpec("850", "Suspense", "CURRLIAB", "none"),
    AccountSpec("860", "Rounding", "CURRLIAB", "none", system_account="ROUNDING"),
    AccountSpec("877", "Tracking Transfers", "CURRLIAB", "none", system_account="TRACKINGTRANSFERS"),
    AccountSpec("880", "Owner A Drawings", "EQUITY", "none"),
    AccountSpec("881", "Owner A Funds Introduced", "EQUITY", "none"),
    AccountSpec("900", "Loan", "TERMLIAB", "none"),
    AccountSpec("960", "Retained Earnings", "EQUITY", "none", system_account="RETAINEDEARNINGS"),
    AccountSpec("970", "Owner A Share Capital", "EQUITY", "none"),
)

# Codes the generator and churn refer to by role.
BANK_CODES = ("090", "091")
CREDIT_CARD_CODE = "092"
FOREIGN_BANK_CODE = "093"
SALES_CODES = ("200", "260")
EXPENSE_CODES = (
    "400",
    "408",
    "412",
    "425",
    "429",
    "433",
    "441",
    "445",
    "449",
    "453",
    "461",
    "469",
    "473",
    "485",
    "489",
)
COGS_CODE = "310"
INTEREST_INCOME_CODE = "270"
BANK_FEES_CODE = "404"
WAGES_CODE = "477"
DEPRECIATION_CODE = "416"
ACCUMULATED_DEPRECIATION_CODE = "721"
OWNER_FUNDS_CODE = "881"
DRAWINGS_CODE = "880"
LOAN_CODE = "900"
PREPAYMENTS_CODE = "620"
INVENTORY_CODE = "630"
